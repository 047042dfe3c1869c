#include "earnbench/target.h"

#include <string>

#include <boost/url/parse.hpp>
#include <fmt/format.h>

namespace earnbench {

std::optional<HttpEndpoint> parse_http_url(std::string_view url) {
  auto u = boost::urls::parse_absolute_uri(url);
  if (!u || u->scheme() != "http" || !u->has_authority() || u->host().empty()) {
    return std::nullopt;
  }
  if ((!u->path().empty() && u->path() != "/") || u->has_query() || u->has_fragment() ||
      u->has_userinfo()) {
    return std::nullopt;
  }

  // A port past 65535 would wrap round in the socket address: refused.
  if (u->has_port() && !u->port().empty() &&
      (u->port().size() > 5 || u->port_number() == 0 ||
       std::stoul(std::string(u->port())) > 65535)) {
    return std::nullopt;
  }
  HttpEndpoint e;
  e.host = u->host_address();
  e.port = u->has_port() && !u->port().empty() ? std::string(u->port()) : "80";
  e.host_header = std::string(u->encoded_host_and_port());
  return e;
}

std::string bench_code(std::string_view prefix, std::size_t i) {
  return fmt::format("{}{:03}", prefix, i);
}

std::vector<std::string> bench_codes(std::string_view prefix,
                                     std::size_t n,
                                     std::string_view single) {
  if (!single.empty()) {
    return {std::string(single)};
  }
  std::vector<std::string> codes;
  codes.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    codes.push_back(bench_code(prefix, i));
  }
  return codes;
}

}  // namespace earnbench
