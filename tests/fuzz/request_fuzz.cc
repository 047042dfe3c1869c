// Fuzzes the request front: Beast's parser with earnd's default limits, then what the server
// does with a parsed request before any handler runs (route predicates, origin-form target and
// query parsing, the JSON parse of a body with the conversion route's depth limit). Nothing may
// crash, hang or read out of bounds.

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include "fuzz_check.h"

namespace bhttp = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(8192);  // config/default.toml max_header_bytes
  parser.body_limit(65536);   // config/default.toml max_body_bytes
  parser.eager(true);
  boost::system::error_code ec;
  std::size_t used = parser.put(boost::asio::buffer(data, size), ec);
  EARND_FUZZ_CHECK(used <= size);
  if (ec || !parser.is_done()) {
    return 0;
  }
  const auto& req = parser.get();
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  bool redirect = target.size() > 3 && target.compare(0, 3, "/r/") == 0;
  bool conversion = path == "/v1/conversions" || path == "/postback";
  (void)redirect;
  if (auto u = boost::urls::parse_origin_form(target)) {
    std::size_t n = 0;
    for (auto p : u->params()) {
      n += p.key.size() + p.value.size();
    }
    for (auto s : u->segments()) {
      n += s.size();
    }
    (void)n;
  }
  if (conversion) {
    boost::json::parse_options opt;
    opt.max_depth = 16;
    boost::system::error_code jec;
    boost::json::value v = boost::json::parse(req.body(), jec, {}, opt);
    if (!jec) {
      std::string again = boost::json::serialize(v);
      EARND_FUZZ_CHECK(!again.empty());
    }
  }
  return 0;
}
