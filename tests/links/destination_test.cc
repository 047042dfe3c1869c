#include "earnd/links/destination.h"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "earnd/common/error.h"

namespace earnd::links {
namespace {

const std::vector<std::string> kShopHosts = {"shop.example.com"};

DestinationError diagnose(std::string_view url,
                          const std::vector<std::string>& hosts = kShopHosts) {
  return diagnose_destination(url, hosts);
}

// Parses a destination the test expects to be valid; the caller checks the fields.
ParsedDestination parse_ok(std::string_view url,
                           const std::vector<std::string>& hosts = kShopHosts) {
  Result<ParsedDestination> parsed = parse_destination(url, hosts);
  EXPECT_TRUE(parsed.has_value()) << url << ": " << destination_error_reason(diagnose(url, hosts));
  return parsed.has_value() ? *parsed : ParsedDestination{};
}

bool is_printable_ascii(std::string_view text) {
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x21 || byte > 0x7e) {
      return false;
    }
  }
  return true;
}

TEST(DestinationTest, NormalizesSchemeHostAndDefaultPort) {
  const ParsedDestination dest = parse_ok("HTTPS://Shop.Example.COM:443/Welcome?src=ref");

  EXPECT_EQ(dest.normalized, "https://shop.example.com/Welcome?src=ref");
  EXPECT_EQ(dest.base, "https://shop.example.com/Welcome");
  EXPECT_EQ(dest.query, "src=ref");
  EXPECT_TRUE(dest.has_query);
  EXPECT_EQ(dest.fragment, "");
  EXPECT_FALSE(dest.has_fragment);
}

TEST(DestinationTest, KeepsOtherPortsWithoutLeadingZeros) {
  EXPECT_EQ(parse_ok("http://shop.example.com:8080/x").base, "http://shop.example.com:8080/x");
  EXPECT_EQ(parse_ok("https://shop.example.com:80/").base, "https://shop.example.com:80/");
  EXPECT_EQ(parse_ok("http://shop.example.com:0080/").base, "http://shop.example.com/");
  EXPECT_EQ(parse_ok("https://shop.example.com:08443/").base, "https://shop.example.com:8443/");
  EXPECT_EQ(parse_ok("https://shop.example.com:/").base, "https://shop.example.com/");
}

TEST(DestinationTest, RejectsPortsOutOfRange) {
  EXPECT_EQ(diagnose("https://shop.example.com:0/"), DestinationError::kBadPort);
  EXPECT_EQ(diagnose("https://shop.example.com:65536/"), DestinationError::kBadPort);
  EXPECT_EQ(diagnose("https://shop.example.com:99999999999999999999/"), DestinationError::kBadPort);
  EXPECT_EQ(parse_ok("https://shop.example.com:65535/").base, "https://shop.example.com:65535/");
}

TEST(DestinationTest, RejectsSchemesOtherThanHttp) {
  for (std::string_view url : {"javascript:alert(1)", "JavaScript://shop.example.com/%0Aalert(1)",
                               "data:text/html,<script>alert(1)</script>",
                               "data:text/html;base64,PHNjcmlwdD4=", "file:///etc/passwd",
                               "ftp://shop.example.com/", "ws://shop.example.com/"}) {
    const Result<ParsedDestination> parsed = parse_destination(url, kShopHosts);
    ASSERT_FALSE(parsed.has_value()) << url;
    EXPECT_EQ(parsed.error(), make_error_code(Errc::kInvalidArgument)) << url;
  }
  EXPECT_EQ(diagnose("javascript:alert(1)"), DestinationError::kScheme);
  EXPECT_EQ(diagnose("file:///etc/passwd"), DestinationError::kScheme);
  EXPECT_EQ(diagnose("//shop.example.com/x"), DestinationError::kMalformed);
  EXPECT_EQ(diagnose("shop.example.com/x"), DestinationError::kMalformed);
  EXPECT_EQ(diagnose("https:shop.example.com/x"), DestinationError::kNoHost);
  EXPECT_EQ(diagnose("https:///x"), DestinationError::kNoHost);
}

TEST(DestinationTest, RejectsRawControlBytesAndSpaces) {
  using namespace std::string_view_literals;
  for (std::string_view url :
       {"https://shop.example.com/a\r\nSet-Cookie:x=1"sv, "https://shop.example.com\r\n/"sv,
        "https://shop.example.com/a\0b"sv, "https://shop.example.com/a\tb"sv,
        "https://shop.example.com/a\x7f"sv, "https://shop.example.com/a b"sv,
        " https://shop.example.com/"sv, "https://shop.example.com/\n"sv}) {
    EXPECT_EQ(diagnose(url), DestinationError::kControlOrSpace) << url;
    EXPECT_FALSE(parse_destination(url, kShopHosts).has_value());
  }
}

TEST(DestinationTest, RejectsEncodedCrLfInHostButKeepsItAsTextInPath) {
  EXPECT_EQ(diagnose("https://shop.example.com%0d%0a.evil.com/"), DestinationError::kBadHost);
  EXPECT_EQ(diagnose("https://shop%0D%0Aexample.com/"), DestinationError::kBadHost);
  EXPECT_EQ(diagnose("https://%73hop.example.com/"), DestinationError::kBadHost);

  const ParsedDestination dest = parse_ok("https://shop.example.com/a%0D%0Ab?c=%0a");
  EXPECT_EQ(dest.normalized, "https://shop.example.com/a%0D%0Ab?c=%0a");
  EXPECT_TRUE(is_printable_ascii(dest.normalized));
}

TEST(DestinationTest, RejectsUserinfo) {
  EXPECT_EQ(diagnose("https://user:pass@shop.example.com/"), DestinationError::kUserinfo);
  EXPECT_EQ(diagnose("https://user@shop.example.com/"), DestinationError::kUserinfo);
  EXPECT_EQ(diagnose("https://@shop.example.com/"), DestinationError::kUserinfo);
  EXPECT_EQ(diagnose("https://shop.example.com@evil.com/", {"shop.example.com", "evil.com"}),
            DestinationError::kUserinfo);
}

TEST(DestinationTest, RejectsHostsNotOnTheList) {
  EXPECT_EQ(diagnose("https://evil.com/"), DestinationError::kHostNotAllowed);
  EXPECT_EQ(diagnose("https://shop.example.com.evil.com/"), DestinationError::kHostNotAllowed);
  EXPECT_EQ(diagnose("https://evilshop.example.com/"), DestinationError::kHostNotAllowed);
  EXPECT_EQ(diagnose("https://example.com/"), DestinationError::kHostNotAllowed);
  EXPECT_EQ(diagnose("https://shop.example.com/", {}), DestinationError::kHostNotAllowed);
  EXPECT_EQ(diagnose("https://shop.example.com/", {""}), DestinationError::kHostNotAllowed);
}

TEST(DestinationTest, MatchesAllowedHostsIgnoringCase) {
  const std::vector<std::string> hosts = {"other.example.org", "Shop.EXAMPLE.com"};
  EXPECT_EQ(parse_ok("https://SHOP.example.COM/p", hosts).normalized, "https://shop.example.com/p");
}

TEST(DestinationTest, WildcardAllowsSubdomainsOnly) {
  const std::vector<std::string> hosts = {"*.Example.com"};
  EXPECT_EQ(parse_ok("https://a.example.com/", hosts).base, "https://a.example.com/");
  EXPECT_EQ(parse_ok("https://a.B.example.com/", hosts).base, "https://a.b.example.com/");
  EXPECT_EQ(diagnose("https://example.com/", hosts), DestinationError::kHostNotAllowed);
  EXPECT_EQ(diagnose("https://badexample.com/", hosts), DestinationError::kHostNotAllowed);
  EXPECT_EQ(diagnose("https://a.example.com.evil.org/", hosts), DestinationError::kHostNotAllowed);
  EXPECT_EQ(diagnose("https://a.example.com/", {"*"}), DestinationError::kHostNotAllowed);
}

TEST(DestinationTest, AcceptsIpLiteralHosts) {
  const ParsedDestination v6 = parse_ok("http://[2001:DB8:0:0::1]:8080/p", {"[2001:db8::1]"});
  EXPECT_EQ(v6.base, "http://[2001:db8::1]:8080/p");
  EXPECT_EQ(parse_ok("http://[::1]/", {"::1"}).base, "http://[::1]/");
  EXPECT_EQ(parse_ok("http://[0:1:0:1:0:1:0:1]/", {"[0:1:0:1:0:1:0:1]"}).base,
            "http://[0:1:0:1:0:1:0:1]/");
  EXPECT_EQ(parse_ok("http://192.0.2.10:81/", {"192.0.2.10"}).base, "http://192.0.2.10:81/");

  EXPECT_EQ(diagnose("http://[v1.shop]/", {"[v1.shop]"}), DestinationError::kBadHost);
  EXPECT_EQ(diagnose("http://[::1/", {"[::1]"}), DestinationError::kMalformed);
}

TEST(DestinationTest, RejectsNamesThatBrowsersReadAsBadIpv4) {
  for (std::string_view host : {"1.2.3.08", "0x7f000001", "127.1", "shop.0x1f", "256.0.0.1"}) {
    const std::string url = "https://" + std::string(host) + "/";
    EXPECT_EQ(diagnose(url, {std::string(host)}), DestinationError::kBadHost) << host;
  }
  EXPECT_EQ(diagnose("https://shop..example.com/", {"shop..example.com"}),
            DestinationError::kBadHost);
  EXPECT_EQ(parse_ok("https://10.0.0.xn--pokxncvks/", {"10.0.0.xn--pokxncvks"}).base,
            "https://10.0.0.xn--pokxncvks/");
}

TEST(DestinationTest, AcceptsPunycodeAndRejectsRawUnicodeHosts) {
  EXPECT_EQ(parse_ok("https://XN--fa-hia.example/", {"xn--fa-hia.example"}).base,
            "https://xn--fa-hia.example/");
  EXPECT_EQ(diagnose("https://fa\xc3\x9f.example/", {"fa\xc3\x9f.example"}),
            DestinationError::kNonAsciiHost);
  EXPECT_EQ(diagnose("https://shop.example.com/caf\xc3\xa9"), DestinationError::kNonAscii);
  EXPECT_EQ(diagnose("https://%C3%A9.example/", {"\xc3\xa9.example"}), DestinationError::kBadHost);
  EXPECT_EQ(parse_ok("https://shop.example.com/caf%C3%A9").base,
            "https://shop.example.com/caf%C3%A9");
}

TEST(DestinationTest, KeepsFragment) {
  const ParsedDestination dest = parse_ok("https://shop.example.com/p?x=1#Section-2");
  EXPECT_EQ(dest.fragment, "Section-2");
  EXPECT_TRUE(dest.has_fragment);
  EXPECT_EQ(dest.normalized, "https://shop.example.com/p?x=1#Section-2");

  const ParsedDestination empty = parse_ok("https://shop.example.com/p#");
  EXPECT_TRUE(empty.has_fragment);
  EXPECT_EQ(empty.fragment, "");
  EXPECT_EQ(empty.normalized, "https://shop.example.com/p#");
}

TEST(DestinationTest, KeepsQueryBytesAsGiven) {
  const ParsedDestination dest = parse_ok("https://shop.example.com/s?q=a+b&r=%20c%2fd&E=%7e&f");
  EXPECT_EQ(dest.query, "q=a+b&r=%20c%2fd&E=%7e&f");
  EXPECT_EQ(dest.normalized, "https://shop.example.com/s?q=a+b&r=%20c%2fd&E=%7e&f");

  const ParsedDestination empty = parse_ok("https://shop.example.com/p?");
  EXPECT_TRUE(empty.has_query);
  EXPECT_EQ(empty.query, "");
  EXPECT_EQ(empty.normalized, "https://shop.example.com/p?");
}

TEST(DestinationTest, ResolvesDotSegmentsAndKeepsEncodedSlashes) {
  EXPECT_EQ(parse_ok("https://shop.example.com").base, "https://shop.example.com/");
  EXPECT_EQ(parse_ok("https://shop.example.com/a/./b/../c").base, "https://shop.example.com/a/c");
  EXPECT_EQ(parse_ok("https://shop.example.com/a/%2e%2E/b").base, "https://shop.example.com/b");
  EXPECT_EQ(parse_ok("https://shop.example.com/../../x").base, "https://shop.example.com/x");
  EXPECT_EQ(parse_ok("https://shop.example.com/a/b/..").base, "https://shop.example.com/a/");
  EXPECT_EQ(parse_ok("https://shop.example.com/a%2Fb/%7e").base,
            "https://shop.example.com/a%2Fb/%7e");
}

TEST(DestinationTest, RejectsEmptyOverlongAndMalformed) {
  EXPECT_EQ(diagnose(""), DestinationError::kEmpty);
  const std::string long_url = "https://shop.example.com/" + std::string(kMaxDestinationBytes, 'a');
  EXPECT_EQ(diagnose(long_url), DestinationError::kTooLong);
  EXPECT_EQ(diagnose("https://shop.example.com/%zz"), DestinationError::kMalformed);
  EXPECT_EQ(diagnose("https://shop.example.com:8a0/"), DestinationError::kMalformed);
  EXPECT_EQ(diagnose("https://shop.example.com/a\"b"), DestinationError::kMalformed);
  EXPECT_EQ(diagnose("https://shop.example.com\\evil.com/"), DestinationError::kMalformed);
}

TEST(DestinationTest, GivesAReasonForEveryError) {
  EXPECT_EQ(destination_error_reason(DestinationError::kNone), "");
  for (int e = 1; e <= static_cast<int>(DestinationError::kHostNotAllowed); ++e) {
    const std::string_view reason = destination_error_reason(static_cast<DestinationError>(e));
    EXPECT_TRUE(reason.starts_with("destination ")) << e << ": " << reason;
  }
  EXPECT_EQ(destination_error_reason(DestinationError::kHostNotAllowed),
            "destination host is not in the program's allowed_hosts");
}

// ---------------------------------------------------------------------------------------------
// WHATWG URL vectors (web-platform-tests urltestdata.json).
//
// Applies to cases without a base whose input, after leading C0 controls and spaces, starts with
// "http:" or "https:" in any case. Skipped: cases with a base (relative references; destinations
// are absolute), other schemes, and the comment strings between cases.
//
// Among the applicable cases, parse_destination rejects by design many that browsers accept;
// for those nothing is asserted beyond the rejection being explained: surrounding or embedded
// whitespace and controls that browsers strip, raw non-ASCII (browsers encode it or apply IDNA),
// backslashes and missing slashes after the scheme, userinfo, percent-encoded hosts, shorthand
// or hex IPv4 forms, empty host labels, invalid %-escapes and '"', '<', '>', '`' that browsers
// encode. For accepted cases the query is not compared with href in general, as we keep it byte
// for byte where browsers encode "'" (only the canonical cases compare it, via input == href).

struct WptTally {
  int applicable = 0;
  int failures_rejected = 0;
  int accepted = 0;
  int canonical_equal = 0;
};

// The authority's host as written, lowercased: the allow-list for a case browsers reject, so
// that our rejection has to come from the syntax checks and not from the allow-list.
std::string host_as_written(std::string_view input) {
  std::string_view rest = input.substr(std::min(input.find("//"), input.size() - 2) + 2);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  rest = rest.substr(rest.rfind('@') == std::string_view::npos ? 0 : rest.rfind('@') + 1);
  rest = rest.substr(0, rest.starts_with('[') ? rest.find(']') + 1 : rest.find(':'));
  std::string host(rest);
  for (char& c : host) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return host;
}

bool is_http_input(std::string_view input) {
  while (!input.empty() && static_cast<unsigned char>(input.front()) <= 0x20) {
    input.remove_prefix(1);
  }
  std::string head(input.substr(0, 6));
  for (char& c : head) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return head.starts_with("http:") || head.starts_with("https:");
}

std::string field(const boost::json::object& test, std::string_view key) {
  const boost::json::value* value = test.if_contains(key);
  return value != nullptr && value->is_string() ? std::string(value->get_string()) : std::string();
}

void check_failure_vector(const std::string& input, WptTally& tally) {
  const std::vector<std::string> hosts = {host_as_written(input)};
  const DestinationError error = diagnose_destination(input, hosts);
  EXPECT_FALSE(parse_destination(input, hosts).has_value()) << input;
  EXPECT_NE(error, DestinationError::kNone) << input;
  EXPECT_NE(error, DestinationError::kHostNotAllowed) << input;
  ++tally.failures_rejected;
}

void check_success_vector(const boost::json::object& test, WptTally& tally) {
  const std::string input = field(test, "input");
  const std::string href = field(test, "href");
  const std::vector<std::string> hosts = {field(test, "hostname")};
  const Result<ParsedDestination> parsed = parse_destination(input, hosts);
  if (!parsed.has_value()) {
    // Our host must be the browser's whenever the syntax passes.
    EXPECT_NE(diagnose_destination(input, hosts), DestinationError::kHostNotAllowed) << input;
    return;
  }

  ++tally.accepted;
  EXPECT_TRUE(is_printable_ascii(parsed->normalized)) << input;
  EXPECT_TRUE(parsed->normalized.starts_with("http://") ||
              parsed->normalized.starts_with("https://"))
      << input;
  EXPECT_EQ(parsed->base,
            field(test, "protocol") + "//" + field(test, "host") + field(test, "pathname"))
      << input;
  EXPECT_EQ(parsed->fragment, field(test, "hash").substr(field(test, "hash").empty() ? 0 : 1))
      << input;
  if (input == href) {
    EXPECT_EQ(parsed->normalized, href);
    ++tally.canonical_equal;
  }
}

TEST(DestinationTest, AgreesWithWhatwgVectors) {
  std::ifstream file(std::string(EARND_TEST_DATA_DIR) + "/wpt-urltestdata.json");
  ASSERT_TRUE(file.is_open());
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const boost::json::value cases = boost::json::parse(text);

  WptTally tally;
  for (const boost::json::value& entry : cases.as_array()) {
    const boost::json::object* test = entry.if_object();
    if (test == nullptr || !test->contains("input") || !is_http_input(field(*test, "input"))) {
      continue;
    }
    const boost::json::value* base = test->if_contains("base");
    if (base != nullptr && !base->is_null()) {
      continue;
    }
    ++tally.applicable;
    if (test->contains("failure")) {
      check_failure_vector(field(*test, "input"), tally);
    } else if (field(*test, "href").starts_with("http")) {
      check_success_vector(*test, tally);
    }
  }

  // Floors a little under today's counts (279 applicable, 147 failures, 51 accepted, 20 equal).
  EXPECT_GE(tally.applicable, 250);
  EXPECT_GE(tally.failures_rejected, 140);
  EXPECT_GE(tally.accepted, 45);
  EXPECT_GE(tally.canonical_equal, 18);
}

TEST(DestinationTest, DiagnosisAgreesWithParse) {
  for (std::string_view url : {"https://shop.example.com/a?b#c", "https://evil.com/",
                               "javascript:alert(1)", "https://shop.example.com:0/"}) {
    const bool parsed = parse_destination(url, kShopHosts).has_value();
    EXPECT_EQ(parsed, diagnose(url) == DestinationError::kNone) << url;
  }
  EXPECT_EQ(diagnose("https://shop.example.com/a?b#c"), DestinationError::kNone);
}

// ---------------------------------------------------------------------------------------------
// Location building.

constexpr std::string_view kClickId = "01j9zq4m7e8x2v5k3c6b1n0p9r";

class LocationTest : public ::testing::Test {
 protected:
  // The Location for the shop destination (or another one) with the usual ref and click params.
  std::string location(std::string_view incoming,
                       std::string_view deep_path = "",
                       std::string_view destination = "https://shop.example.com/welcome?src=ref") {
    const ParsedDestination dest = parse_ok(destination);
    std::string out;
    build_location(dest,
                   {.incoming_query = incoming,
                    .deep_path = deep_path,
                    .ref_param = "ref",
                    .ref_value = "ana",
                    .click_param = "earnd_cid",
                    .click_value = kClickId},
                   out);
    return out;
  }

  static std::string tail() { return "ref=ana&earnd_cid=" + std::string(kClickId); }
};

TEST_F(LocationTest, AppendsRefAndClickAfterDestinationQuery) {
  EXPECT_EQ(location(""), "https://shop.example.com/welcome?src=ref&" + tail());
  EXPECT_EQ(location("", "", "https://shop.example.com/welcome"),
            "https://shop.example.com/welcome?" + tail());
  EXPECT_EQ(location("", "", "https://shop.example.com/welcome?"),
            "https://shop.example.com/welcome?" + tail());
  EXPECT_EQ(location("", "", "https://shop.example.com/w?a=1&"),
            "https://shop.example.com/w?a=1&" + tail());
}

TEST_F(LocationTest, MergesIncomingUtmParams) {
  EXPECT_EQ(location("utm_source=news&utm_medium=e+mail&utm_campaign=spring%202024"),
            "https://shop.example.com/welcome?src=ref&utm_source=news&utm_medium=e+mail&"
            "utm_campaign=spring%202024&" +
                tail());
}

TEST_F(LocationTest, DropsIncomingRefAndClickParams) {
  EXPECT_EQ(location("ref=evil&earnd_cid=fake&REF=x&%72ef=y&Earnd%5Fcid&utm_source=a&ref"),
            "https://shop.example.com/welcome?src=ref&utm_source=a&" + tail());
}

TEST_F(LocationTest, KeepsDestinationParamsOverIncomingOnes) {
  EXPECT_EQ(location("src=other&SRC=x&utm_term=1"),
            "https://shop.example.com/welcome?src=ref&utm_term=1&" + tail());
}

TEST_F(LocationTest, KeepsFirstOfRepeatedIncomingNames) {
  EXPECT_EQ(location("utm_source=a&utm_source=b&x&x=2&%75tm_source=c"),
            "https://shop.example.com/welcome?src=ref&utm_source=a&x&" + tail());
}

TEST_F(LocationTest, DropsDestinationsOwnRefAndClickParams) {
  EXPECT_EQ(location("", "", "https://shop.example.com/?ref=old&x=1&earnd_cid=0"),
            "https://shop.example.com/?x=1&" + tail());
}

TEST_F(LocationTest, ComparesWithEveryDestinationParamEvenPastTheStoredOnes) {
  std::string destination = "https://shop.example.com/?";
  for (int i = 0; i < 40; ++i) {
    destination += "d" + std::to_string(i) + "=" + std::to_string(i) + "&";
  }
  destination.pop_back();

  const std::string out = location("d39=spoof&D0=x&fresh=1", "", destination);
  EXPECT_EQ(out, destination + "&fresh=1&" + tail());
}

TEST_F(LocationTest, KeepsDestinationQueryBytesAndFragment) {
  EXPECT_EQ(location("utm_source=a", "", "https://shop.example.com/s?q=a+b%20c&e=%7e#top"),
            "https://shop.example.com/s?q=a+b%20c&e=%7e&utm_source=a&" + tail() + "#top");
  EXPECT_EQ(location("", "", "https://shop.example.com/s#"),
            "https://shop.example.com/s?" + tail() + "#");
}

TEST_F(LocationTest, SkipsEmptyAndNamelessIncomingParams) {
  EXPECT_EQ(location("&&=x&a=1&&"), "https://shop.example.com/welcome?src=ref&a=1&" + tail());
}

TEST_F(LocationTest, EncodesUnsafeIncomingBytes) {
  using namespace std::string_literals;
  EXPECT_EQ(location("q=a b\"<>\\^`{|}#[]\x01\x7f\xc3\xa9"s),
            "https://shop.example.com/welcome?src=ref&"
            "q=a%20b%22%3C%3E%5C%5E%60%7B%7C%7D%23%5B%5D%01%7F%C3%A9&" +
                tail());
  EXPECT_EQ(location("a=%41%7e&b=%&c=%4&d=%zz&e=/?:@!$'()*,;"),
            "https://shop.example.com/welcome?src=ref&a=%41%7e&b=%25&c=%254&d=%25zz&"
            "e=/?:@!$'()*,;&" +
                tail());
  EXPECT_EQ(location("x=1\r\nSet-Cookie:%20a=b"),
            "https://shop.example.com/welcome?src=ref&x=1%0D%0ASet-Cookie:%20a=b&" + tail());
}

TEST_F(LocationTest, AppendsDeepPathWithOneSlash) {
  EXPECT_EQ(location("", "shoes/red"),
            "https://shop.example.com/welcome/shoes/red?src=ref&" + tail());
  EXPECT_EQ(location("", "/a//b/", "https://shop.example.com/"),
            "https://shop.example.com/a/b?" + tail());
  EXPECT_EQ(location("", "a", "https://shop.example.com/dir/"),
            "https://shop.example.com/dir/a?" + tail());
  EXPECT_EQ(location("", "//", "https://shop.example.com/dir"),
            "https://shop.example.com/dir?" + tail());
}

TEST_F(LocationTest, DropsDotSegmentsFromDeepPath) {
  const std::string expected = "https://shop.example.com/welcome/admin?src=ref&" + tail();
  EXPECT_EQ(location("", "../../admin"), expected);
  EXPECT_EQ(location("", "%2e%2E/./admin/."), expected);
  EXPECT_EQ(location("", ".%2e/admin/.."), expected);
  EXPECT_EQ(location("", "...x/..%2f"),
            "https://shop.example.com/welcome/...x/..%2f?src=ref&" + tail());
}

TEST_F(LocationTest, EncodesUnsafeDeepPathBytes) {
  EXPECT_EQ(
      location("", "a b/c?d#e\\f/%41%/\r\n\xff"),
      "https://shop.example.com/welcome/a%20b/c%3Fd%23e%5Cf/%41%25/%0D%0A%FF?src=ref&" + tail());
}

TEST_F(LocationTest, EncodesRefAndClickDefensively) {
  const ParsedDestination dest = parse_ok("https://shop.example.com/");
  std::string out;
  build_location(dest,
                 {.incoming_query = "",
                  .deep_path = "",
                  .ref_param = "r f",
                  .ref_value = "a&b=c d%41",
                  .click_param = "",
                  .click_value = "ignored"},
                 out);
  EXPECT_EQ(out, "https://shop.example.com/?r%20f=a%26b%3Dc%20d%2541");
}

TEST_F(LocationTest, ReservesClickNameEvenWithoutAClickId) {
  const ParsedDestination dest = parse_ok("https://shop.example.com/?earnd_cid=old&a=1");
  std::string out;
  build_location(dest,
                 {.incoming_query = "earnd_cid=fake&utm_source=x",
                  .deep_path = "",
                  .ref_param = "ref",
                  .ref_value = "ana",
                  .click_param = "earnd_cid",
                  .click_value = ""},
                 out);
  EXPECT_EQ(out, "https://shop.example.com/?a=1&utm_source=x&ref=ana");
}

TEST_F(LocationTest, LooksAtALimitedNumberOfIncomingParams) {
  std::string incoming;
  for (std::size_t i = 0; i < kMaxForwardedParams + 8; ++i) {
    incoming += "p" + std::to_string(i) + "=" + std::to_string(i) + "&";
  }
  const std::string out = location(incoming);
  const std::string last = "p" + std::to_string(kMaxForwardedParams - 1) + "=";
  const std::string first_dropped = "p" + std::to_string(kMaxForwardedParams) + "=";
  EXPECT_NE(out.find("&" + last), std::string::npos);
  EXPECT_EQ(out.find("&" + first_dropped), std::string::npos);
  EXPECT_TRUE(out.ends_with(tail()));
}

TEST_F(LocationTest, AppendsWithoutReallocatingAReservedBuffer) {
  const ParsedDestination dest = parse_ok("https://shop.example.com/welcome?src=ref#top");
  std::string out = "Location: ";
  out.reserve(1024);
  const char* data = out.data();
  const std::size_t capacity = out.capacity();

  build_location(dest,
                 {.incoming_query = "utm_source=news&utm_medium=email",
                  .deep_path = "shoes",
                  .ref_param = "ref",
                  .ref_value = "ana",
                  .click_param = "earnd_cid",
                  .click_value = kClickId},
                 out);
  EXPECT_EQ(out,
            "Location: https://shop.example.com/welcome/shoes?src=ref&utm_source=news&"
            "utm_medium=email&" +
                tail() + "#top");
  EXPECT_EQ(out.data(), data);
  EXPECT_EQ(out.capacity(), capacity);
}

TEST_F(LocationTest, NeverEmitsBytesOutsidePrintableAscii) {
  for (int byte = 0; byte < 256; ++byte) {
    const std::string b(1, static_cast<char>(byte));
    const std::string out = location("k" + b + "=v" + b + "&" + b, "d" + b + "/" + b);
    EXPECT_TRUE(is_printable_ascii(out)) << "byte " << byte << ": " << out;
  }

  std::mt19937 random(20240611);
  std::uniform_int_distribution<int> any_byte(0, 255);
  for (int round = 0; round < 2000; ++round) {
    std::string incoming(static_cast<std::size_t>(round % 97), '\0');
    for (char& c : incoming) {
      c = static_cast<char>(any_byte(random));
    }
    const std::string out = location(incoming, incoming);
    ASSERT_TRUE(is_printable_ascii(out)) << out;
    ASSERT_TRUE(out.ends_with(tail())) << out;
  }
}

}  // namespace
}  // namespace earnd::links
