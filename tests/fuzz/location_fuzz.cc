// Fuzzes destination checking and Location building. Input: a destination URL, a 0x00 byte,
// the incoming query, a 0x00 byte, the deep path. Whatever comes in, an accepted destination
// normalizes to itself, and a Location holds only bytes 0x21..0x7e and stays under the
// destination's base (so on the allowed host).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "earnd/links/destination.h"
#include "fuzz_check.h"

using namespace earnd::links;

namespace {

const std::vector<std::string> kAllowed = {"shop.example.com", "*.example.org", "[2001:db8::1]"};

void check_location(const ParsedDestination& dest, std::string_view query, std::string_view deep) {
  LocationParts parts{.incoming_query = query,
                      .deep_path = deep,
                      .ref_param = "ref",
                      .ref_value = "ana",
                      .click_param = "earnd_cid",
                      .click_value = "06h3x1q2w3e4r5t6y7u8i9o0pa"};
  std::string out;
  build_location(dest, parts, out);
  for (unsigned char ch : out) {
    EARND_FUZZ_CHECK(ch >= 0x21 && ch <= 0x7e);
  }
  EARND_FUZZ_CHECK(out.starts_with(dest.base));
  // After the base comes a path below it, the query or the fragment: never "@" or "//host".
  EARND_FUZZ_CHECK(out.find("&ref=ana&earnd_cid=") != std::string::npos ||
                   out.find("?ref=ana&earnd_cid=") != std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::size_t a = in.find('\0');
  std::string_view url = in.substr(0, a);
  std::string_view rest = a == std::string_view::npos ? "" : in.substr(a + 1);
  std::size_t b = rest.find('\0');
  std::string_view query = rest.substr(0, b);
  std::string_view deep = b == std::string_view::npos ? "" : rest.substr(b + 1);

  auto parsed = parse_destination(url, kAllowed);
  EARND_FUZZ_CHECK(parsed.has_value() ==
                   (diagnose_destination(url, kAllowed) == DestinationError::kNone));
  if (parsed) {
    for (unsigned char ch : parsed->normalized) {
      EARND_FUZZ_CHECK(ch >= 0x21 && ch <= 0x7e);
    }
    auto again = parse_destination(parsed->normalized, kAllowed);
    EARND_FUZZ_CHECK(again && again->normalized == parsed->normalized);
    check_location(*parsed, query, deep);
  }

  static const ParsedDestination fixed =
      *parse_destination("https://shop.example.com/welcome/x?src=ref&ref=old#top", kAllowed);
  check_location(fixed, query, deep);
  return 0;
}
