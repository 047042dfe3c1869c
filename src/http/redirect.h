#pragma once

// The redirect hot path: from a parsed GET|HEAD /r/{code} request to the 302's bytes and the
// click record, without locks and, once the per-thread buffers have grown, without allocating
// beyond the click record's strings.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

#include "earnd/common/hash.h"
#include "earnd/ingest/pipeline.h"
#include "earnd/links/catalog.h"
#include "handlers.h"

namespace earnd::http {

// The configured trusted proxies: addresses or CIDR blocks. Throws ConfigError on a bad entry.
class TrustedProxies {
 public:
  explicit TrustedProxies(const std::vector<std::string>& entries);

  bool contains(const boost::asio::ip::address& a) const noexcept;
  bool empty() const noexcept { return v4_.empty() && v6_.empty(); }

 private:
  std::vector<boost::asio::ip::network_v4> v4_;
  std::vector<boost::asio::ip::network_v6> v6_;
};

// Per-thread buffers reused from one redirect to the next.
struct RedirectScratch {
  std::string location;
  std::string response;
};

struct RedirectInput {
  const Request& request;
  boost::asio::ip::address peer;
  std::uint64_t now_ms = 0;
};

struct RedirectEnv {
  Services& services;
  const KeyedHasher& hasher;
  const TrustedProxies& proxies;
};

struct RedirectPlan {
  enum class Kind {
    kClick,  // a 302 for a known link; click is to be stored
    kReply,  // anything else (unknown code, fallback): reply says what to send
  };
  Kind kind = Kind::kReply;
  ingest::PendingClick click;
  Reply reply;
};

// True when target starts with "/r/".
inline bool is_redirect_target(std::string_view target) noexcept {
  return target.size() > 3 && target.compare(0, 3, "/r/") == 0;
}

// Classifies the request, makes the click and writes the 302 into scratch.response, without the
// final Connection header and blank line (the session adds them). With with_click false the
// Location carries only the referral parameter and no cookie is set (used when the click could
// not be queued). Thread-safe for distinct scratch objects.
RedirectPlan plan_redirect(const RedirectEnv& env,
                           const links::Snapshot& snapshot,
                           const RedirectInput& in,
                           RedirectScratch& scratch,
                           bool with_click = true);

// The client address: the peer, or when the peer is a trusted proxy, the right-most address in
// X-Forwarded-For that is not itself a trusted proxy.
boost::asio::ip::address client_address(const Request& req,
                                        const boost::asio::ip::address& peer,
                                        const TrustedProxies& proxies);

// The keyed hash of the client address and user agent that identifies a visitor.
std::uint64_t visitor_hash(const RedirectEnv& env,
                           const Request& req,
                           const boost::asio::ip::address& peer);

// The lower-case host of a Referer header value, or "" when it has none.
std::string_view referer_host(std::string_view referer, char* buf, std::size_t cap) noexcept;

// Serializes a Reply (status line, headers, body) into out.
void format_reply(const Reply& r, bool head_only, bool keep_alive, bool http10, std::string& out);

inline void append_close_header(std::string& out) { out += "Connection: close\r\n"; }

inline void append_keep_alive_header(std::string& out) { out += "Connection: keep-alive\r\n"; }

}  // namespace earnd::http
