#pragma once

// Latency recording for earnbench: a Boost.Histogram over whole microseconds up to 10 s. Below
// 2048 µs every microsecond has its own bin; above, bins grow by 0.1 % each, so a percentile
// is exact to the microsecond where most redirects land and within 0.1 % in the tail. Values
// of 10 s or more fall in the overflow bin and are reported as the exact maximum.

#include <cstdint>
#include <vector>

#include <boost/histogram.hpp>

namespace earnbench {

class LatencyHistogram {
 public:
  // The axis is shared by every instance (built once, about 10,500 edges); each instance holds
  // its own counts (about 84 KB).
  LatencyHistogram();

  // Records one latency in microseconds. Does not allocate. Not thread-safe: each thread
  // records into its own histogram and merge() joins them at the end.
  void record(std::uint64_t us) noexcept;

  // Adds the other histogram's counts to this one.
  void merge(const LatencyHistogram& other);

  // The latency at or below which pct percent of the recorded values lie (pct in [0, 100]):
  // the largest whole microsecond of the bin that holds that rank, never above max(). Returns
  // 0 when nothing was recorded.
  std::uint64_t percentile(double pct) const;

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept;

  // The largest value with a bin of its own; larger values count only toward max().
  static constexpr std::uint64_t kMaxTrackedUs = 10'000'000;

 private:
  using Axis = boost::histogram::axis::variable<double>;
  using Hist = boost::histogram::histogram<std::tuple<Axis>,
                                           boost::histogram::dense_storage<std::uint64_t>>;

  static const std::vector<double>& edges();

  Hist hist_;
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
  double sum_ = 0;
};

}  // namespace earnbench
