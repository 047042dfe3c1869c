#pragma once

// One webhook attempt as an Asio coroutine: resolve, refuse private targets, connect, TLS for
// https, POST, read the response, all under one deadline. Runs on the delivery thread only.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>

#include "earnd/common/error.h"

namespace earnd::webhooks {

// Where a webhook URL points. Built from the URL text; allocates.
struct Target {
  bool tls = false;
  std::string host;         // a name, or an IP address without brackets
  std::uint16_t port = 0;   // the URL's, or 80 / 443
  std::string target;       // path and query, at least "/"
  std::string host_header;  // host and port as the URL wrote them
};

// Parses an http or https URL with a host. Errc::kInvalidArgument for anything else.
Result<Target> parse_target(std::string_view url);

// True for addresses a webhook must not reach unless private targets are allowed: loopback,
// RFC 1918, link-local, shared, unspecified, protocol-assignment, benchmarking, multicast and
// reserved IPv4; loopback, unspecified, link-local, unique-local and multicast IPv6; and the
// IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64 64:ff9b::/96, 6to4 2002::/16)
// judged by that address.
bool is_private_address(const boost::asio::ip::address& address) noexcept;

// What the receiver said, or why it said nothing.
struct Outcome {
  unsigned status = 0;     // HTTP status when a response arrived
  std::string error;       // otherwise why not, e.g. "connect: Connection refused"
  bool permanent = false;  // true when retrying cannot help (a refused private target)
};

// The request to send, minus the target: body and Standard Webhooks headers.
struct OutgoingRequest {
  std::string_view id;
  std::uint64_t timestamp_s = 0;
  std::string_view signature;
  std::string_view body;
};

inline constexpr std::string_view kPrivateRefused = "private address refused";

// Sends one POST and returns its outcome; never throws for network failures. tls must outlive
// the coroutine. The deadline covers resolve, connect, handshake, write and read.
boost::asio::awaitable<Outcome> send_once(boost::asio::ssl::context& tls,
                                          const Target& target,
                                          const OutgoingRequest& request,
                                          std::chrono::milliseconds timeout,
                                          bool allow_private);

}  // namespace earnd::webhooks
