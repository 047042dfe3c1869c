#include "earnbench/zipf.h"

#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace earnbench {
namespace {

TEST(ZipfSamplerTest, ExponentZeroIsUniform) {
  ZipfSampler z(4, 0);
  for (std::size_t k = 0; k < 4; ++k) {
    EXPECT_DOUBLE_EQ(z.probability(k), 0.25);
  }
  EXPECT_EQ(z.rank(0.0), 0u);
  EXPECT_EQ(z.rank(0.26), 1u);
  EXPECT_EQ(z.rank(0.74), 2u);
  EXPECT_EQ(z.rank(0.9999), 3u);
}

TEST(ZipfSamplerTest, ProbabilitiesFollowThePowerLaw) {
  ZipfSampler z(100, 1.1);
  // P(k) is proportional to 1 / (k + 1)^1.1.
  EXPECT_NEAR(z.probability(0) / z.probability(1), std::pow(2.0, 1.1), 1e-9);
  EXPECT_NEAR(z.probability(0) / z.probability(9), std::pow(10.0, 1.1), 1e-9);

  double harmonic = 0;
  for (int k = 1; k <= 100; ++k) {
    harmonic += std::pow(k, -1.1);
  }
  EXPECT_NEAR(z.probability(0), 1 / harmonic, 1e-12);

  double total = 0;
  for (std::size_t k = 0; k < z.size(); ++k) {
    total += z.probability(k);
  }
  EXPECT_NEAR(total, 1.0, 1e-12);
}

TEST(ZipfSamplerTest, RankWalksTheCumulativeTable) {
  // Weights 1, 1/2, 1/3 over 11/6: the table is 6/11, 9/11, 1.
  ZipfSampler z(3, 1);
  EXPECT_EQ(z.rank(0.0), 0u);
  EXPECT_EQ(z.rank(6.0 / 11 - 1e-9), 0u);
  EXPECT_EQ(z.rank(6.0 / 11 + 1e-9), 1u);
  EXPECT_EQ(z.rank(9.0 / 11 + 1e-9), 2u);
  EXPECT_EQ(z.rank(0.999999999), 2u);
  EXPECT_EQ(z.rank(1.0), 2u);  // Out of range draws stay in range.
}

TEST(ZipfSamplerTest, DrawnFrequenciesMatchTheDistribution) {
  ZipfSampler z(1000, 1.1);
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<int> seen(z.size());
  constexpr int kDraws = 400'000;
  for (int i = 0; i < kDraws; ++i) {
    ++seen[z.rank(u(rng))];
  }
  for (std::size_t k : {0u, 1u, 9u, 99u}) {
    double expected = z.probability(k) * kDraws;
    EXPECT_NEAR(seen[k], expected, 5 * std::sqrt(expected)) << "rank " << k;
  }
}

TEST(ZipfSamplerTest, SingleCodeAlwaysDrawsRankZero) {
  ZipfSampler z(1, 1.1);
  EXPECT_DOUBLE_EQ(z.probability(0), 1.0);
  EXPECT_EQ(z.rank(0.7), 0u);
}

}  // namespace
}  // namespace earnbench
