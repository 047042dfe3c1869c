#include "earnbench/zipf.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace earnbench {

ZipfSampler::ZipfSampler(std::size_t n, double s) : cdf_(n) {
  assert(n >= 1 && s >= 0);
  double total = 0;
  for (std::size_t k = 0; k < n; ++k) {
    total += 1.0 / std::pow(static_cast<double>(k + 1), s);
    cdf_[k] = total;
  }
  for (double& c : cdf_) {
    c /= total;
  }
  // Rounding may leave the last entry a hair below 1; a draw just under 1 must still land.
  cdf_.back() = 1.0;
}

std::size_t ZipfSampler::rank(double u) const noexcept {
  auto it = std::upper_bound(cdf_.begin(), cdf_.end(), u);
  if (it == cdf_.end()) {
    return cdf_.size() - 1;
  }
  return static_cast<std::size_t>(it - cdf_.begin());
}

double ZipfSampler::probability(std::size_t k) const noexcept {
  return k == 0 ? cdf_[0] : cdf_[k] - cdf_[k - 1];
}

}  // namespace earnbench
