// RFC 3339 times on the wire: what parses, to which millisecond, and what is refused.

#include "earnd/common/time.h"

#include <gtest/gtest.h>

namespace earnd {
namespace {

constexpr std::uint64_t kDec1At10 = 1'764'583'200'000;  // 2025-12-01T10:00:00Z

TEST(ParseRfc3339Test, ReadsUtcWithAndWithoutFraction) {
  EXPECT_EQ(parse_rfc3339_ms("2025-12-01T10:00:00Z"), kDec1At10);
  EXPECT_EQ(parse_rfc3339_ms("2025-12-01T10:00:00.5Z"), kDec1At10 + 500);
  EXPECT_EQ(parse_rfc3339_ms("2025-12-01T10:00:00.123Z"), kDec1At10 + 123);
  EXPECT_EQ(parse_rfc3339_ms("1970-01-01T00:00:00Z"), 0u);
}

TEST(ParseRfc3339Test, AppliesNumericOffsets) {
  EXPECT_EQ(parse_rfc3339_ms("2025-12-01T11:00:00+01:00"), kDec1At10);
  EXPECT_EQ(parse_rfc3339_ms("2025-12-01T02:00:00-08:00"), kDec1At10);
  EXPECT_EQ(parse_rfc3339_ms("2025-12-01T10:00:00+00:00"), kDec1At10);
  EXPECT_EQ(parse_rfc3339_ms("2025-12-02T09:59:00+23:59"), kDec1At10);
}

TEST(ParseRfc3339Test, RefusesWhatIsNotTheShape) {
  for (const char* bad : {
           "2025-12-01T10:000:00Z",  // a field wider than the format (the fuzzer's find)
           "2025-12-01T10:00:000Z",
           "2025-12-01 10:00:00Z",  // space instead of T
           "2025-12-01T10:00:00",   // no zone
           "2025-12-01T10:00:00z",
           "2025-12-01T10:00:00.Z",  // empty fraction
           "2025-12-01T10:00:00.1234567890Z",
           "2025-12-01T10:00:00+0100",
           "2025-12-01T10:00:00+01:00:00",
           "2025-12-01T10:00:00+24:00",  // offset hours are 00-23
           "2025-12-01T10:00:00-99:00",
           "2025-12-01T10:00:00+23:60",  // offset minutes are 00-59
           "2025-12-01T10:00:00+00:99",
           "20251-12-01T10:00:00Z",
           "2025-1a-01T10:00:00Z",
           "+025-12-01T10:00:00Z",
           "",
           "Z",
       }) {
    EXPECT_FALSE(parse_rfc3339_ms(bad).has_value()) << bad;
  }
}

TEST(ParseRfc3339Test, RefusesImpossibleDatesAndTimesBefore1970) {
  EXPECT_FALSE(parse_rfc3339_ms("2025-13-01T10:00:00Z").has_value());
  EXPECT_FALSE(parse_rfc3339_ms("2025-12-01T25:00:00Z").has_value());
  EXPECT_FALSE(parse_rfc3339_ms("1969-12-31T23:59:59Z").has_value());
}

TEST(FormatRfc3339Test, RoundTripsSecondsAndMilliseconds) {
  EXPECT_EQ(format_rfc3339(kDec1At10), "2025-12-01T10:00:00Z");
  EXPECT_EQ(format_rfc3339(kDec1At10 + 42), "2025-12-01T10:00:00.042Z");
  EXPECT_EQ(parse_rfc3339_ms(format_rfc3339(kDec1At10 + 42)), kDec1At10 + 42);
}

}  // namespace
}  // namespace earnd
