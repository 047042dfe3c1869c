#pragma once

// What earnbench aims at: the server's address from an http:// URL, and the link codes it
// clicks.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace earnbench {

struct HttpEndpoint {
  std::string host;  // Name or address, without brackets for IPv6.
  std::string port;  // "80" when the URL names none.
  std::string host_header;  // Host as the URL wrote it, with the port: the Host header value.
};

// Parses "http://HOST[:PORT][/]". Returns nullopt for other schemes, a missing host, or a
// path, query or fragment (earnbench chooses the paths itself).
std::optional<HttpEndpoint> parse_http_url(std::string_view url);

// The code of bench link i: prefix followed by i with at least three digits ("b000", "b001",
// ..., "b1234"), because earnd's codes are 3 to 32 characters long.
std::string bench_code(std::string_view prefix, std::size_t i);

// The codes a run clicks: just `single` when it is set, else bench_code(prefix, 0..n-1).
std::vector<std::string> bench_codes(std::string_view prefix, std::size_t n, std::string_view single);

}  // namespace earnbench
