#include "earnbench/plan.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "earnbench/result.h"

namespace earnbench {
namespace json = boost::json;

namespace {

std::optional<double> number_at(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_number()) {
    return std::nullopt;
  }
  return it->value().to_number<double>();
}

const json::object* object_at(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_object() ? &it->value().get_object() : nullptr;
}

}  // namespace

MeasuredRun measured_run_from_json(const json::value& doc, std::string source) {
  if (!doc.is_object()) {
    throw std::runtime_error(source + " is not an earnbench result (not a JSON object)");
  }
  const json::object& o = doc.get_object();
  MeasuredRun run;
  run.source = std::move(source);
  // The 302 answers per second (capacity.rps_302); files from before it was written carry only
  // throughput_rps, every answer.
  run.throughput_rps = number_at(o, "throughput_rps").value_or(0);
  if (const json::object* capacity = object_at(o, "capacity")) {
    if (auto rps = number_at(*capacity, "rps_302")) {
      run.throughput_rps = *rps;
    }
  }
  if (!(run.throughput_rps > 0) || !std::isfinite(run.throughput_rps)) {
    throw std::runtime_error(run.source + " has no positive rate of 302 answers to scale from");
  }
  if (run.throughput_rps < 1 || run.throughput_rps > 1e9) {
    throw std::runtime_error(run.source + ": a rate of " + std::to_string(run.throughput_rps) +
                             " answers/s is not one to plan from (1 to 1e9)");
  }
  if (auto it = o.find("interrupted");
      it != o.end() && it->value().is_bool() && it->value().get_bool()) {
    throw std::runtime_error(run.source +
                             " is an interrupted run (Ctrl-C): plan from one that ran its course");
  }

  if (const json::object* server = object_at(o, "server")) {
    run.cpu_cores_used = number_at(*server, "cpu_cores_used");
    run.bytes_per_click = number_at(*server, "bytes_written_per_click");
    run.rss_bytes = number_at(*server, "rss_bytes");
  }
  // A hand-edited or damaged file: a figure that cannot be a measurement is refused.
  // Upper bounds far past any machine: 10,000 cores, 1 MB per click, 1 PB of memory.
  const std::pair<std::optional<double>*, double> figures[] = {
      {&run.cpu_cores_used, 1e4}, {&run.bytes_per_click, 1e6}, {&run.rss_bytes, 1e15}};
  for (auto [f, hi] : figures) {
    if (*f && (!std::isfinite(**f) || **f <= 0 || **f > hi)) {
      throw std::runtime_error(run.source +
                               ": server figures (cpu_cores_used, bytes_written_per_click, "
                               "rss_bytes) must be positive numbers of a real machine");
    }
    if (*f && f == &run.cpu_cores_used && **f < 1e-3) {
      throw std::runtime_error(run.source + ": cpu_cores_used below 0.001 is not a measurement");
    }
  }
  if (const json::object* latency = object_at(o, "latency_us")) {
    run.p99_us = number_at(*latency, "p99");
  }
  if (const json::object* errors = object_at(o, "errors")) {
    run.errors = number_at(*errors, "total").value_or(0);
  }
  if (const json::object* machine = object_at(o, "machine")) {
    double cpus = number_at(*machine, "cpus").value_or(0);
    if (!(cpus >= 0 && cpus <= 100'000)) {
      throw std::runtime_error(run.source + ": machine.cpus must be 0 to 100000");
    }
    run.machine_cpus = static_cast<unsigned>(cpus);
  }
  if (const json::object* scenario = object_at(o, "scenario")) {
    if (auto it = scenario->find("mode"); it != scenario->end() && it->value().is_string()) {
      run.mode = std::string(it->value().get_string());
    }
  }
  return run;
}

std::optional<std::string> invalid_plan_request(const PlanRequest& r) {
  auto bad = [](double v, double lo, double hi) { return !std::isfinite(v) || v < lo || v > hi; };
  if (bad(r.clicks_per_day, 1, 1e13)) {
    return fmt::format("--clicks-per-day must be from 1 to 1e13, not {}", r.clicks_per_day);
  }
  if (bad(r.peak_factor, 1, 1000)) {
    return fmt::format("--peak-factor (peak over the day's mean) must be from 1 to 1000, not {}",
                       r.peak_factor);
  }
  if (bad(r.retention_days, 0, 36'500)) {
    return fmt::format("--retention-days must be from 0 to 36500, not {}", r.retention_days);
  }
  if (!(r.target_utilization >= 0.01 && r.target_utilization <= 1)) {
    return fmt::format("--target-utilization must be from 0.01 to 1, not {}", r.target_utilization);
  }
  if (bad(r.disk_headroom, 1, 100) || bad(r.memory_headroom, 1, 100)) {
    return fmt::format("--disk-headroom and --memory-headroom must be from 1 to 100, not {} and {}",
                       r.disk_headroom, r.memory_headroom);
  }
  if (r.disk_bytes_per_click &&
      (bad(*r.disk_bytes_per_click, 0, 1e6) || *r.disk_bytes_per_click <= 0)) {
    return fmt::format("--disk-bytes-per-click must be above 0 and at most 1000000, not {}",
                       *r.disk_bytes_per_click);
  }
  return std::nullopt;
}

Plan make_plan(const PlanRequest& req, const MeasuredRun& run) {
  Plan p;
  p.mean_rps = req.clicks_per_day / 86400.0;
  p.peak_rps = p.mean_rps * req.peak_factor;
  p.stored_clicks = req.clicks_per_day * req.retention_days;

  if (run.cpu_cores_used && *run.cpu_cores_used > 0) {
    p.rps_per_core = run.throughput_rps / *run.cpu_cores_used;
    double usable = *p.rps_per_core * req.target_utilization;
    p.cores = static_cast<unsigned>(std::max(1.0, std::ceil(p.peak_rps / usable)));
  }
  if (run.rss_bytes) {
    p.memory_bytes = *run.rss_bytes * req.memory_headroom;
  }
  if (auto per_click = req.disk_bytes_per_click ? req.disk_bytes_per_click : run.bytes_per_click) {
    p.disk_bytes = p.stored_clicks * *per_click * req.disk_headroom;
  }
  return p;
}

std::string plan_text(const PlanRequest& req, const MeasuredRun& run, const Plan& p) {
  std::string out =
      fmt::format("earnbench plan: {} clicks/day, peak factor {}, retention {} days\n\n",
                  group_digits(req.clicks_per_day), req.peak_factor, req.retention_days);

  out += fmt::format(
      "Derived from the measured run in {} on this machine ({} CPUs, load generator on the same "
      "cores):\n  {} {} req/s",
      run.source, run.machine_cpus, run.mode.empty() ? "a" : run.mode,
      group_digits(run.throughput_rps));
  if (run.cpu_cores_used) {
    out += fmt::format(" using {:.2f} server cores", *run.cpu_cores_used);
  }
  if (run.p99_us) {
    out += fmt::format(", p99 {} us", group_digits(*run.p99_us));
  }
  out += fmt::format(", {} errors.\n", group_digits(run.errors));
  if (run.errors > 0) {
    out += "Warning: that run had errors, so its figures may not describe a healthy server.\n";
  }
  out += "\n";

  out += fmt::format("  mean rate    {:.1f} clicks/s\n", p.mean_rps);
  out += fmt::format("  peak rate    {:.1f} clicks/s (mean x {})\n", p.peak_rps, req.peak_factor);
  if (p.cores) {
    out += fmt::format(
        "  cores        {}  (peak / ({} req/s per core measured x {:.0f}% target utilization), at "
        "least 1)\n",
        *p.cores, group_digits(*p.rps_per_core), req.target_utilization * 100);
  } else {
    out +=
        "  cores        n/a: the run has no server CPU figure (rerun earnbench with "
        "--admin-url and --server-pid)\n";
  }
  if (p.memory_bytes) {
    out +=
        fmt::format("  memory       {}  (server RSS measured at the end of the run, {}, x {})\n",
                    human_bytes(*p.memory_bytes), human_bytes(*run.rss_bytes), req.memory_headroom);
  } else {
    out += "  memory       n/a: the run has no server RSS (rerun earnbench with --server-pid)\n";
  }
  if (p.disk_bytes && req.disk_bytes_per_click) {
    out += fmt::format(
        "  disk         {}  ({} stored clicks x {:.1f} B per click on disk after compaction, as "
        "given, x {} headroom)\n",
        human_bytes(*p.disk_bytes), group_digits(p.stored_clicks), *req.disk_bytes_per_click,
        req.disk_headroom);
  } else if (p.disk_bytes) {
    out += fmt::format(
        "  disk         {}  ({} stored clicks x {:.1f} B per click handed to RocksDB, before "
        "compression, x {} headroom)\n",
        human_bytes(*p.disk_bytes), group_digits(p.stored_clicks), *run.bytes_per_click,
        req.disk_headroom);
  } else {
    out +=
        "  disk         n/a: the run has no bytes per click (rerun earnbench with --admin-url)\n";
  }

  if (p.peak_rps > run.throughput_rps) {
    out += fmt::format(
        "\nNote: the peak is above the {} req/s the measured run reached, so that run does not "
        "show one\nserver sustaining it; the core count assumes the work spreads over servers or "
        "cores linearly.\n",
        group_digits(run.throughput_rps));
  }

  out += fmt::format(
      "\nAssumed:\n"
      "  - CPU per click stays what the run measured, so cores scale linearly with the rate, and "
      "the\n    peak may use {:.0f}% of each core;\n"
      "  - bytes per click are {}, x{} for compaction, the write-ahead log and free space;\n"
      "  - memory does not grow with the number of stored clicks (earnd's design), so the RSS "
      "measured\n    at the end of the run, x{}, covers any retention;\n"
      "  - another machine, durability setting or traffic mix needs a run of its own.\n",
      req.target_utilization * 100,
      req.disk_bytes_per_click
          ? "the on-disk figure given with --disk-bytes-per-click"
          : "what earnd handed to RocksDB per stored click in that run (before\n    compression "
            "and compaction: an upper bound; pass --disk-bytes-per-click from\n    `earnctl stats "
            "--compact` on your own data for the real figure)",
      req.disk_headroom, req.memory_headroom);
  return out;
}

std::string human_bytes(double bytes) {
  constexpr const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  int unit = 0;
  while (bytes >= 1000 && unit < 5) {
    bytes /= 1000;
    ++unit;
  }
  return fmt::format("{:.1f} {}", bytes, kUnits[unit]);
}

}  // namespace earnbench
