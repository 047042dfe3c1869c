#pragma once

// Process-wide counters and histograms, rendered in Prometheus text format at the admin
// /metrics. Counting is lock-free (relaxed atomics and Boost.Histogram's thread-safe counts), so
// the hot path may count from any thread.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>


namespace earnd::metrics {

// A latency or size histogram with fixed bucket bounds, safe to fill from many threads.
// Prometheus buckets have inclusive upper bounds (v <= le), while Boost.Histogram's bins are
// half-open [a, b) and drop values below the first edge; so the few counters live here, as an
// array of atomics indexed by binary search over the bounds.
class Histogram {
 public:
  // bounds: ascending upper bounds of the buckets (a +Inf bucket is added).
  explicit Histogram(std::vector<double> bounds);

  void observe(double v) noexcept;

  // Appends the Prometheus series (name_bucket{le=...}, name_sum, name_count).
  void render(const std::string& name, const std::string& labels, std::string& out) const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // bounds_.size() + 1 slots
  std::atomic<double> sum_{0.0};
};

enum class Route : std::uint8_t { kRedirect, kConversion, kHealth, kAdmin, kMetrics, kOther };
inline constexpr int kRouteCount = 6;
enum class Listener : std::uint8_t { kPublic, kAdmin };

// The registry. One instance per server, created at startup and outliving every thread that
// counts into it.
class Metrics {
 public:
  Metrics();

  void count_request(Listener l, Route r, unsigned status) noexcept;

  // Redirect latency from the end of reading the request to the response being queued, in
  // seconds (includes the group-commit wait in group durability).
  Histogram redirect_seconds;
  Histogram batch_size;
  Histogram commit_seconds;

  std::array<std::atomic<std::uint64_t>, 8> clicks_by_reason{};
  std::atomic<std::uint64_t> clicks_stored{0};
  std::atomic<std::uint64_t> clicks_dropped_queue_full{0};
  std::atomic<std::uint64_t> clicks_dropped_storage{0};
  std::atomic<std::uint64_t> bytes_written{0};
  std::atomic<std::uint64_t> connections_open{0};
  std::atomic<std::uint64_t> connections_rejected{0};
  std::atomic<std::uint64_t> requests_rejected_parse{0};

  // A gauge or counter read at render time (queue depth, RocksDB properties). Register before
  // the server starts serving; the callback runs on the thread rendering /metrics.
  void add_gauge(std::string name, std::string help, std::function<double()> read);

  // Names for the clicks_by_reason slots, in slot order. Set once before serving.
  void set_reason_names(std::vector<std::string> names) { reason_names_ = std::move(names); }

  std::string render() const;

 private:
  static constexpr std::array<unsigned, 16> kStatuses = {200, 201, 204, 302, 400, 401, 403, 404,
                                                         405, 408, 409, 413, 429, 431, 500, 503};
  // requests_[listener][route][status index]; the last index counts other statuses.
  std::array<std::array<std::array<std::atomic<std::uint64_t>, kStatuses.size() + 1>, kRouteCount>,
             2>
      requests_{};

  struct Gauge {
    std::string name;
    std::string help;
    std::function<double()> read;
  };
  std::vector<Gauge> gauges_;
  std::vector<std::string> reason_names_;
};

}  // namespace earnd::metrics
