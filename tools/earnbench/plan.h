#pragma once

// `earnbench plan`: cores, memory and disk for a click load, scaled from one measured earnbench
// run on this machine. Every figure says what it was derived from and what was assumed.

#include <optional>
#include <string>

#include <boost/json/value.hpp>

namespace earnbench {

struct PlanRequest {
  double clicks_per_day = 0;
  double peak_factor = 1;           // Peak rate over the day's mean rate.
  double retention_days = 0;        // How long clicks stay on disk.
  double target_utilization = 0.7;  // Share of each core the plan lets the peak use (assumed).
  double disk_headroom = 1.5;       // Compaction, write-ahead log and free space (assumed).
  double memory_headroom = 1.5;     // Over the measured resident set (assumed).
  // Bytes on disk per stored click measured after compaction (earnctl stats --compact) on data
  // like the user's; when set, the disk line uses it instead of the run's bytes handed to
  // RocksDB, which are before compression and so an upper bound.
  std::optional<double> disk_bytes_per_click;
};

// The figures of an earlier run that the plan scales from.
struct MeasuredRun {
  std::string source;  // The result file it came from.
  std::string mode;    // "closed-loop" or "open-loop".
  double throughput_rps = 0;
  std::optional<double> cpu_cores_used;   // Server CPU seconds per second of the run.
  std::optional<double> bytes_per_click;  // Bytes written to storage per stored click.
  std::optional<double> rss_bytes;        // Server resident set at the end of the run.
  std::optional<double> p99_us;
  double errors = 0;
  unsigned machine_cpus = 0;
};

// Reads the fields of a result file written by `earnbench --json`. Throws std::runtime_error
// when the document has no positive throughput_rps (it is then not a result of a run).
MeasuredRun measured_run_from_json(const boost::json::value& doc, std::string source);

struct Plan {
  double mean_rps = 0;
  double peak_rps = 0;
  double stored_clicks = 0;  // Clicks kept at once: a day's clicks times the retention.
  std::optional<double> rps_per_core;
  std::optional<unsigned> cores;
  std::optional<double> memory_bytes;
  std::optional<double> disk_bytes;
};

// Why the request cannot be planned (a value out of its range, NaN, an infinity), or nullopt.
std::optional<std::string> invalid_plan_request(const PlanRequest& r);

// Pure arithmetic; figures whose inputs the run lacks stay empty.
Plan make_plan(const PlanRequest& req, const MeasuredRun& run);

// The report printed by `earnbench plan`, naming the run it came from and every assumption.
std::string plan_text(const PlanRequest& req, const MeasuredRun& run, const Plan& plan);

// 1.5e11 -> "150.0 GB" (decimal units).
std::string human_bytes(double bytes);

}  // namespace earnbench
