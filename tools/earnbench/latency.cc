#include "earnbench/latency.h"

#include <algorithm>
#include <cmath>

namespace earnbench {
namespace {

constexpr double kUnitBinsUpTo = 2048;  // Every microsecond below this has its own bin.
constexpr double kGrowth = 1.001;      // Above it, each bin is 0.1 % wider than the last.

std::vector<double> make_edges() {
  std::vector<double> e;
  for (double v = 0; v <= kUnitBinsUpTo; ++v) {
    e.push_back(v);
  }
  // Edges stay whole microseconds so that a bin's upper edge minus one is a real value.
  while (e.back() < static_cast<double>(LatencyHistogram::kMaxTrackedUs)) {
    double next = std::max(e.back() + 1, std::round(e.back() * kGrowth));
    e.push_back(std::min(next, static_cast<double>(LatencyHistogram::kMaxTrackedUs)));
  }
  return e;
}

}  // namespace

const std::vector<double>& LatencyHistogram::edges() {
  static const std::vector<double> kEdges = make_edges();
  return kEdges;
}

LatencyHistogram::LatencyHistogram()
    : hist_(boost::histogram::make_histogram_with(boost::histogram::dense_storage<std::uint64_t>(),
                                                  Axis(edges()))) {}

void LatencyHistogram::record(std::uint64_t us) noexcept {
  hist_(static_cast<double>(us));
  ++count_;
  max_ = std::max(max_, us);
  sum_ += static_cast<double>(us);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  hist_ += other.hist_;
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

double LatencyHistogram::mean() const noexcept {
  return count_ == 0 ? 0 : sum_ / static_cast<double>(count_);
}

std::uint64_t LatencyHistogram::percentile(double pct) const {
  if (count_ == 0) {
    return 0;
  }

  // The rank of the value asked for, 1-based: the smallest value with at least pct percent of
  // the values at or below it.
  // The small allowance keeps 99.9 % of 1000 at rank 999 although 99.9 / 100 * 1000 comes out
  // a hair above 999 in binary floating point.
  double exact = std::clamp(pct, 0.0, 100.0) / 100.0 * static_cast<double>(count_);
  double wanted = std::ceil(exact - 1e-9 * std::max(1.0, exact));
  std::uint64_t rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(wanted));

  const Axis& axis = hist_.axis();
  std::uint64_t seen = 0;
  for (int i = 0; i < axis.size(); ++i) {
    seen += hist_.at(i);
    if (seen >= rank) {
      auto top = static_cast<std::uint64_t>(axis.bin(i).upper()) - 1;
      return std::min(top, max_);
    }
  }
  return max_;  // The rank lies in the overflow bin.
}

}  // namespace earnbench
