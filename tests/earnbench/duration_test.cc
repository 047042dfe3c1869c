#include "earnbench/duration.h"

#include <gtest/gtest.h>

namespace earnbench {
namespace {

using namespace std::chrono_literals;

TEST(DurationTest, ParsesEveryUnit) {
  EXPECT_EQ(parse_duration("10s"), std::chrono::nanoseconds(10s));
  EXPECT_EQ(parse_duration("500ms"), std::chrono::nanoseconds(500ms));
  EXPECT_EQ(parse_duration("1.5s"), std::chrono::nanoseconds(1500ms));
  EXPECT_EQ(parse_duration("2m"), std::chrono::nanoseconds(120s));
  EXPECT_EQ(parse_duration("1h"), std::chrono::nanoseconds(3600s));
  EXPECT_EQ(parse_duration("250us"), std::chrono::nanoseconds(250us));
  EXPECT_EQ(parse_duration("100ns"), std::chrono::nanoseconds(100));
}

TEST(DurationTest, BareNumberMeansSeconds) {
  EXPECT_EQ(parse_duration("3"), std::chrono::nanoseconds(3s));
  EXPECT_EQ(parse_duration(" 0.25 "), std::chrono::nanoseconds(250ms));
}

TEST(DurationTest, RejectsMalformedInput) {
  for (const char* bad : {"", "s", "ms", "-1s", "10x", "1 0s", "abc", "inf", "nan", "+5s", "5 s"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(DurationTest, FormatsInTheLargestReadableUnit) {
  EXPECT_EQ(format_duration(10s), "10s");
  EXPECT_EQ(format_duration(1500ms), "1.5s");
  EXPECT_EQ(format_duration(500ms), "500ms");
  EXPECT_EQ(format_duration(2min), "2m");
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(250us), "250us");
  EXPECT_EQ(parse_duration(format_duration(1500ms)), std::chrono::nanoseconds(1500ms));
}

}  // namespace
}  // namespace earnbench
