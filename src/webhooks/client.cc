#include "client.h"

#include <algorithm>
#include <array>
#include <memory>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <openssl/ssl.h>

namespace earnd::webhooks {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// Every asynchronous step yields its error code instead of throwing.
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

// A receiver's answer is only read for its status; a larger body ends the read early, which is
// harmless once the status line is in.
constexpr std::uint64_t kMaxResponseBody = 64 * 1024;

constexpr std::string_view kUserAgent = "earnd-webhooks/0.1";

Outcome failed(std::string_view step, const ErrorCode& ec) {
  // The deadline shows up as Beast's timeout, or as an abort of the resolver by the watchdog.
  if (ec == beast::error::timeout || ec == asio::error::operation_aborted) {
    return Outcome{.error = std::string(step) + ": timeout"};
  }
  return Outcome{.error = std::string(step) + ": " + ec.message()};
}

bool is_ip_literal(const std::string& host) {
  ErrorCode ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

http::request<http::string_body> make_request(const Target& target,
                                              const OutgoingRequest& request) {
  http::request<http::string_body> req{http::verb::post, target.target, 11};
  req.set(http::field::host, target.host_header);
  req.set(http::field::user_agent, kUserAgent);
  req.set(http::field::content_type, "application/json");
  req.set("webhook-id", request.id);
  req.set("webhook-timestamp", std::to_string(request.timestamp_s));
  req.set("webhook-signature", request.signature);
  req.keep_alive(false);
  req.body() = std::string(request.body);
  req.prepare_payload();
  return req;
}

template <typename Stream>
asio::awaitable<Outcome> exchange(Stream& stream, http::request<http::string_body>& req) {
  auto [wec, written] = co_await http::async_write(stream, req, kAwait);
  if (wec) {
    co_return failed("write", wec);
  }

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxResponseBody);
  auto [rec, read] = co_await http::async_read(stream, buffer, parser, kAwait);
  if (rec && !(rec == http::error::body_limit && parser.is_header_done())) {
    co_return failed("read", rec);
  }
  Outcome outcome;
  outcome.status = parser.get().result_int();
  co_return outcome;
}

asio::awaitable<Outcome> send_tls(ssl::context& tls,
                                  const Target& target,
                                  const tcp::resolver::results_type& endpoints,
                                  std::chrono::steady_clock::time_point deadline,
                                  http::request<http::string_body>& req) {
  auto ex = co_await asio::this_coro::executor;
  beast::ssl_stream<beast::tcp_stream> stream(ex, tls);

  // SNI is for names only (RFC 6066); the certificate must match the host either way.
  ErrorCode ec;
  if (!is_ip_literal(target.host) &&
      SSL_set_tlsext_host_name(stream.native_handle(), target.host.c_str()) != 1) {
    co_return Outcome{.error = "tls: cannot set server name"};
  }
  stream.set_verify_mode(ssl::verify_peer, ec);
  if (!ec) {
    stream.set_verify_callback(ssl::host_name_verification(target.host), ec);
  }
  if (ec) {
    co_return failed("tls", ec);
  }

  beast::get_lowest_layer(stream).expires_at(deadline);
  auto [cec, endpoint] = co_await beast::get_lowest_layer(stream).async_connect(endpoints, kAwait);
  if (cec) {
    co_return failed("connect", cec);
  }
  auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, kAwait);
  if (hec) {
    co_return failed("tls handshake", hec);
  }
  // No TLS close_notify: the request is answered and the connection is not reused.
  co_return co_await exchange(stream, req);
}

}  // namespace

Result<Target> parse_target(std::string_view url) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    return make_error_code(Errc::kInvalidArgument);
  }
  const boost::urls::url_view& u = *parsed;
  bool https = u.scheme_id() == boost::urls::scheme::https;
  if ((!https && u.scheme_id() != boost::urls::scheme::http) || !u.has_authority() ||
      u.encoded_host().empty()) {
    return make_error_code(Errc::kInvalidArgument);
  }

  Target t;
  t.tls = https;
  t.host = u.host_address();
  if (u.has_port()) {
    if (u.port_number() == 0) {
      return make_error_code(Errc::kInvalidArgument);
    }
    t.port = u.port_number();
  } else {
    t.port = https ? 443 : 80;
  }
  t.target = u.encoded_target();
  if (t.target.empty() || t.target.front() != '/') {
    t.target.insert(0, "/");
  }
  t.host_header = u.encoded_host_and_port();
  return t;
}

bool is_private_address(const asio::ip::address& address) noexcept {
  if (address.is_v6()) {
    const asio::ip::address_v6 v6 = address.to_v6();
    if (v6.is_v4_mapped()) {
      return is_private_address(asio::ip::make_address_v4(asio::ip::v4_mapped, v6));
    }
    const auto bytes = v6.to_bytes();
    auto v4_at = [&bytes](std::size_t at) {
      return asio::ip::address_v4(
          asio::ip::address_v4::bytes_type{bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]});
    };
    bool zero_prefix =
        std::all_of(bytes.begin(), bytes.begin() + 12, [](auto b) { return b == 0; });
    // IPv4 addresses carried inside IPv6 ones reach the IPv4 host: ::a.b.c.d (IPv4-compatible),
    // 64:ff9b::/96 (NAT64) and 2002::/16 (6to4) are judged by the address they carry.
    if (zero_prefix && !v6.is_loopback() && !v6.is_unspecified()) {
      return is_private_address(v4_at(12));
    }
    static constexpr std::array<unsigned char, 12> kNat64{0x00, 0x64, 0xff, 0x9b};
    if (std::equal(kNat64.begin(), kNat64.end(), bytes.begin())) {
      return is_private_address(v4_at(12));
    }
    if (bytes[0] == 0x20 && bytes[1] == 0x02) {
      return is_private_address(v4_at(2));
    }
    bool unique_local = (bytes[0] & 0xfe) == 0xfc;  // fc00::/7
    return v6.is_loopback() || v6.is_unspecified() || v6.is_link_local() || v6.is_site_local() ||
           unique_local || v6.is_multicast();
  }

  const std::uint32_t a = address.to_v4().to_uint();
  auto in = [a](std::uint32_t net, int bits) { return (a >> (32 - bits)) == (net >> (32 - bits)); };
  return in(0x00000000, 8)      // 0.0.0.0/8, "this network"
         || in(0x7f000000, 8)   // 127.0.0.0/8
         || in(0x0a000000, 8)   // 10.0.0.0/8
         || in(0xac100000, 12)  // 172.16.0.0/12
         || in(0xc0a80000, 16)  // 192.168.0.0/16
         || in(0xa9fe0000, 16)  // 169.254.0.0/16, link-local (cloud metadata lives here)
         || in(0x64400000, 10)  // 100.64.0.0/10, carrier-grade NAT
         || in(0xc0000000, 24)  // 192.0.0.0/24, IETF protocol assignments
         || in(0xc6120000, 15)  // 198.18.0.0/15, benchmarking
         || in(0xe0000000, 4)   // 224.0.0.0/4, multicast
         || in(0xf0000000, 4);  // 240.0.0.0/4, reserved, and the broadcast address
}

asio::awaitable<Outcome> send_once(ssl::context& tls,
                                   const Target& target,
                                   const OutgoingRequest& request,
                                   std::chrono::milliseconds timeout,
                                   bool allow_private) {
  auto ex = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + timeout;

  // The resolver has no deadline of its own; a watchdog cancels it. The watchdog holds the
  // resolver weakly because its handler may run after this frame is gone.
  auto resolver = std::make_shared<tcp::resolver>(ex);
  asio::steady_timer watchdog(ex, deadline);
  watchdog.async_wait([weak = std::weak_ptr<tcp::resolver>(resolver)](ErrorCode ec) {
    if (ec) {
      return;
    }
    if (auto r = weak.lock()) {
      r->cancel();
    }
  });
  auto [rec, endpoints] =
      co_await resolver->async_resolve(target.host, std::to_string(target.port), kAwait);
  watchdog.cancel();
  if (rec) {
    co_return failed("resolve", rec);
  }

  // Every address is checked, not just the one connected to: a name that resolves to a public
  // and a private address could otherwise be steered to the private one.
  if (!allow_private) {
    for (const auto& entry : endpoints) {
      if (is_private_address(entry.endpoint().address())) {
        co_return Outcome{.error = std::string(kPrivateRefused), .permanent = true};
      }
    }
  }

  auto req = make_request(target, request);
  if (target.tls) {
    co_return co_await send_tls(tls, target, endpoints, deadline, req);
  }
  beast::tcp_stream stream(ex);
  stream.expires_at(deadline);
  auto [cec, endpoint] = co_await stream.async_connect(endpoints, kAwait);
  if (cec) {
    co_return failed("connect", cec);
  }
  co_return co_await exchange(stream, req);
}

}  // namespace earnd::webhooks
