#include "../../src/http/rate_limiter.h"

#include <chrono>
#include <string>

#include <gtest/gtest.h>

namespace earnd::http {
namespace {

using namespace std::chrono_literals;
using Clock = RateLimiter::Clock;

TEST(RateLimiterTest, GivesEachKeyItsBurstThenItsRate) {
  RateLimiter limiter(2, 5);  // 2 a second, 5 at once
  auto t = Clock::time_point{} + 1h;
  int allowed = 0;
  for (int i = 0; i < 10; ++i) {
    allowed += limiter.allow("a", t);
  }
  EXPECT_EQ(allowed, 5);
  EXPECT_TRUE(limiter.allow("b", t)) << "one key's use is not another's";
  EXPECT_FALSE(limiter.allow("a", t + 400ms));
  EXPECT_TRUE(limiter.allow("a", t + 500ms));  // one token back after half a second
  EXPECT_FALSE(limiter.allow("a", t + 500ms));
  EXPECT_EQ(limiter.retry_after_s(), 1);
}

TEST(RateLimiterTest, ZeroRateIsOff) {
  RateLimiter limiter(0, 1);
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(limiter.allow("a"));
  }
}

// A flood of new keys (spoofed addresses) once the table is full must not reset the budget of
// the keys already tracked: busy keys stay, a new key is refused until one goes idle.
TEST(RateLimiterTest, AFloodOfNewKeysNeitherResetsBusyKeysNorGrowsTheTable) {
  RateLimiter limiter(1, 2, 3);  // 1 a second, 2 at once, 3 keys at most
  auto t = Clock::time_point{} + 1h;
  for (const char* k : {"a", "b", "c"}) {
    EXPECT_TRUE(limiter.allow(k, t));
    EXPECT_TRUE(limiter.allow(k, t));
    EXPECT_FALSE(limiter.allow(k, t));
  }
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(limiter.allow("new" + std::to_string(i), t)) << i;
  }
  EXPECT_FALSE(limiter.allow("a", t)) << "a's used-up budget was reset by the flood";
  // Once a key has refilled, it is idle and its place can go to a new key.
  EXPECT_TRUE(limiter.allow("d", t + 3s));
}

}  // namespace
}  // namespace earnd::http
