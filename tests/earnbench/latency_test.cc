#include "earnbench/latency.h"

#include <gtest/gtest.h>

namespace earnbench {
namespace {

TEST(LatencyHistogramTest, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(50), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0);
}

TEST(LatencyHistogramTest, PercentilesAreExactBelowTwoMilliseconds) {
  LatencyHistogram h;
  for (std::uint64_t us = 1; us <= 1000; ++us) {
    h.record(us);
  }
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.percentile(50), 500u);
  EXPECT_EQ(h.percentile(90), 900u);
  EXPECT_EQ(h.percentile(99), 990u);
  EXPECT_EQ(h.percentile(99.9), 999u);
  EXPECT_EQ(h.percentile(100), 1000u);
  EXPECT_EQ(h.max(), 1000u);
  EXPECT_DOUBLE_EQ(h.mean(), 500.5);
}

TEST(LatencyHistogramTest, RareOutliersShowOnlyAboveTheirRank) {
  LatencyHistogram h;
  for (int i = 0; i < 999; ++i) {
    h.record(100);
  }
  h.record(5000);
  EXPECT_EQ(h.percentile(99.9), 100u);  // Rank 999 of 1000.
  EXPECT_EQ(h.max(), 5000u);

  h.record(5000);  // Now 2 of 1001 values lie above 99.9 %.
  EXPECT_EQ(h.percentile(99.9), 5000u);
}

TEST(LatencyHistogramTest, TailBinsStayWithinATenthOfAPercent) {
  LatencyHistogram h;
  h.record(100'000);
  h.record(200'000);
  std::uint64_t p50 = h.percentile(50);
  EXPECT_GE(p50, 100'000u);
  EXPECT_LE(p50, 100'100u);
  EXPECT_EQ(h.percentile(100), 200'000u);  // Capped at the exact maximum.
}

TEST(LatencyHistogramTest, OverflowReportsTheMaximum) {
  LatencyHistogram h;
  h.record(10);
  h.record(25'000'000);  // 25 s, past the last bin.
  EXPECT_EQ(h.percentile(50), 10u);
  EXPECT_EQ(h.percentile(99), 25'000'000u);
  EXPECT_EQ(h.max(), 25'000'000u);
}

TEST(LatencyHistogramTest, MergeEqualsRecordingEverythingInOne) {
  LatencyHistogram a;
  LatencyHistogram b;
  LatencyHistogram all;
  for (std::uint64_t us = 1; us <= 5000; ++us) {
    (us % 2 == 0 ? a : b).record(us);
    all.record(us);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max(), all.max());
  for (double pct : {50.0, 90.0, 99.0, 99.9}) {
    EXPECT_EQ(a.percentile(pct), all.percentile(pct)) << pct;
  }
  EXPECT_GE(a.percentile(50), 2500u);  // Bins are 2 to 3 us wide past 2048 us.
  EXPECT_LE(a.percentile(50), 2502u);
}

}  // namespace
}  // namespace earnbench
