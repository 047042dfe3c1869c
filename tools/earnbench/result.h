#pragma once

// What one earnbench run measured, and the two ways it is reported: a human summary on stdout
// and a JSON document for scripts (the same figures, latency in microseconds under
// "latency_us" with the keys p50, p90, p99, p999 and max).

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <boost/json/object.hpp>

#include "earnbench/latency.h"
#include "earnbench/proc_stat.h"
#include "earnbench/prometheus.h"

namespace earnbench {

// The load that was asked for, echoed into the report so that a result file explains itself.
struct Scenario {
  std::string url;
  double rate = 0;  // Requests per second in total; 0 means closed loop.
  unsigned connections = 16;
  unsigned threads = 2;
  std::size_t codes = 100;
  double zipf = 1.1;
  double new_conn_share = 0;
  double bot_share = 0.02;
  double conversions_per_click = 0;
  double duration_s = 10;
  std::uint64_t max_requests = 0;  // 0: bounded by the duration only.
  double timeout_s = 5;
};

struct LatencySummary {
  std::uint64_t p50 = 0;
  std::uint64_t p90 = 0;
  std::uint64_t p99 = 0;
  std::uint64_t p999 = 0;
  std::uint64_t max = 0;
  double mean = 0;
};

LatencySummary summarize(const LatencyHistogram& h);

// Failed click requests by kind. A request that got an HTTP answer other than 302 counts under
// its status.
struct ErrorCounts {
  std::uint64_t connect = 0;
  std::uint64_t write = 0;
  std::uint64_t read = 0;
  std::uint64_t timeout = 0;
  std::map<unsigned, std::uint64_t> status;

  std::uint64_t total() const noexcept;
};

// Server-side figures from the /metrics deltas and the server's CPU counters. Every field is
// empty when its source was not available.
struct ServerFigures {
  std::string skipped;  // Why /metrics was not read; empty when it was.
  std::optional<double> clicks_stored;
  std::optional<double> clicks_dropped;
  std::optional<double> bytes_written_per_click;
  std::optional<double> mean_batch_size;
  std::optional<double> mean_commit_us;
  std::optional<double> mean_redirect_us;
  std::optional<double> cpu_seconds;
  std::optional<double> cpu_cores_used;
  std::optional<double> cpu_us_per_request;
  std::optional<double> rss_bytes;
  std::string cpu_source;  // Where the CPU figure came from, or why there is none.
};

// Computes the per-click figures. `requests` is every request the server answered during the
// run (clicks and conversions), used for CPU per request. Either snapshot may be empty.
ServerFigures server_figures(const MetricsSnapshot& before,
                             const MetricsSnapshot& after,
                             const std::optional<ProcUsage>& proc_before,
                             const std::optional<ProcUsage>& proc_after,
                             double elapsed_s,
                             std::uint64_t requests);

struct RunResult {
  Scenario scenario;
  double elapsed_s = 0;
  std::uint64_t requests = 0;   // Click requests answered with any HTTP status.
  std::uint64_t redirects = 0;  // Of which 302.
  std::uint64_t new_connections = 0;
  std::uint64_t bot_requests = 0;
  LatencySummary latency;
  ErrorCounts errors;
  std::uint64_t conversions_sent = 0;
  std::uint64_t conversions_accepted = 0;
  ServerFigures server;
  unsigned machine_cpus = 0;
  bool interrupted = false;  // stopped early (Ctrl-C): the figures cover the part that ran

  double throughput_rps() const noexcept;  // every answered click request per second
  double redirect_rps() const noexcept;    // the 302 answers per second: the capacity figure
};

// "none", or the errors by kind: "connect 3, timeout 2, status 404: 10".
std::string error_line(const ErrorCounts& e);

boost::json::object to_json(const RunResult& r);

// Serializes with two-space indentation and numbers in their shortest form ("0.02", not
// "2E-2"), for result files that people read as well as scripts. Non-finite numbers become null.
std::string pretty_json(const boost::json::value& v);

// The multi-line human summary, ending in a newline.
std::string summary_text(const RunResult& r);

// 1234567 -> "1,234,567".
std::string group_digits(double v);

}  // namespace earnbench
