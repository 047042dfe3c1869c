#pragma once

// Popularity of link codes: a Zipf distribution over ranks 0..n-1, where rank k is drawn with
// probability proportional to 1 / (k + 1)^s. Rank 0 is the most popular code.

#include <cstddef>
#include <vector>

namespace earnbench {

class ZipfSampler {
 public:
  // Builds the cumulative table for n ranks with exponent s (s = 0 is uniform). Allocates
  // n doubles. Requires: n >= 1, s >= 0.
  ZipfSampler(std::size_t n, double s);

  // Maps a uniform draw u in [0, 1) to a rank in [0, n). Binary search over the table: no
  // allocation, thread-safe on a shared sampler.
  std::size_t rank(double u) const noexcept;

  // The probability of drawing rank k. Requires: k < size().
  double probability(std::size_t k) const noexcept;

  std::size_t size() const noexcept { return cdf_.size(); }

 private:
  std::vector<double> cdf_;  // cdf_[k] = P(rank <= k); the last entry is exactly 1.
};

}  // namespace earnbench
