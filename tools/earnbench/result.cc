#include "earnbench/result.h"

#include <cmath>

#include <boost/json.hpp>
#include <fmt/format.h>

namespace earnbench {
namespace json = boost::json;

namespace {

json::value opt(const std::optional<double>& v) {
  return v ? json::value(*v) : json::value(nullptr);
}

std::optional<double> ratio(const std::optional<double>& num, const std::optional<double>& den) {
  if (!num || !den || *den <= 0) {
    return std::nullopt;
  }
  return *num / *den;
}

std::string fixed(const std::optional<double>& v, int digits, std::string_view unit) {
  if (!v) {
    return "n/a";
  }
  return fmt::format("{:.{}f}{}", *v, digits, unit);
}

std::string percent(double share) {
  return fmt::format("{:g}%", share * 100);
}

json::object scenario_json(const Scenario& s) {
  return {
      {"url", s.url},
      {"mode", s.rate > 0 ? "open-loop" : "closed-loop"},
      {"rate_rps", s.rate > 0 ? json::value(s.rate) : json::value(nullptr)},
      {"connections", s.connections},
      {"threads", s.threads},
      {"codes", s.codes},
      {"zipf", s.zipf},
      {"new_conn_share", s.new_conn_share},
      {"bot_share", s.bot_share},
      {"conversions_per_click", s.conversions_per_click},
      {"duration_s", s.duration_s},
      {"max_requests", s.max_requests},
      {"timeout_s", s.timeout_s},
  };
}

json::object server_json(const ServerFigures& f) {
  return {
      {"metrics", f.skipped.empty() ? "read" : f.skipped},
      {"clicks_stored", opt(f.clicks_stored)},
      {"clicks_dropped", opt(f.clicks_dropped)},
      {"bytes_written_per_click", opt(f.bytes_written_per_click)},
      {"mean_batch_size", opt(f.mean_batch_size)},
      {"mean_commit_us", opt(f.mean_commit_us)},
      {"mean_redirect_us", opt(f.mean_redirect_us)},
      {"cpu_seconds", opt(f.cpu_seconds)},
      {"cpu_cores_used", opt(f.cpu_cores_used)},
      {"cpu_us_per_request", opt(f.cpu_us_per_request)},
      {"rss_bytes", opt(f.rss_bytes)},
      {"cpu_source", f.cpu_source},
  };
}

std::string server_lines(const RunResult& r) {
  const ServerFigures& f = r.server;
  std::string out;
  if (!f.skipped.empty()) {
    out += fmt::format("  server      /metrics not read: {}\n", f.skipped);
  } else {
    out += fmt::format(
        "  server      clicks stored {} (dropped {}), {} written per click, batch {} clicks "
        "mean, commit {} mean, redirect {} mean\n",
        f.clicks_stored ? group_digits(*f.clicks_stored) : "n/a",
        f.clicks_dropped ? group_digits(*f.clicks_dropped) : "n/a",
        fixed(f.bytes_written_per_click, 1, " B"), fixed(f.mean_batch_size, 1, ""),
        fixed(f.mean_commit_us, 0, " us"), fixed(f.mean_redirect_us, 1, " us"));
  }
  if (f.cpu_cores_used) {
    out += fmt::format("              cpu {:.2f} cores, {:.1f} us per request ({}){}\n",
                       *f.cpu_cores_used, f.cpu_us_per_request.value_or(0), f.cpu_source,
                       f.rss_bytes ? fmt::format(", rss {:.0f} MB", *f.rss_bytes / 1e6) : "");
  } else {
    out += fmt::format("              cpu n/a ({})\n", f.cpu_source);
  }
  return out;
}

std::string capacity_line(const RunResult& r) {
  double rps = r.redirect_rps();
  std::string line = fmt::format("  capacity    {} clicks/s sustained = {} clicks/day",
                                 group_digits(rps), group_digits(rps * 86400));
  if (r.server.cpu_cores_used && *r.server.cpu_cores_used > 0) {
    line += fmt::format(", {} req/s per server core", group_digits(rps / *r.server.cpu_cores_used));
  }
  line += fmt::format(" (this machine, {} CPUs, load generator on the same cores", r.machine_cpus);
  if (r.scenario.rate > 0) {
    line += "; open loop: the offered rate, not the maximum";
  }
  return line + ")\n";
}

void pretty(const json::value& v, int depth, std::string& out) {
  std::string pad(2 * (depth + 1), ' ');
  switch (v.kind()) {
    case json::kind::object: {
      const json::object& o = v.get_object();
      if (o.empty()) {
        out += "{}";
        return;
      }
      out += "{\n";
      bool first = true;
      for (const auto& [key, value] : o) {
        out += first ? "" : ",\n";
        first = false;
        out += pad;
        out += json::serialize(json::string_view(key));
        out += ": ";
        pretty(value, depth + 1, out);
      }
      out += '\n';
      out.append(2 * static_cast<std::size_t>(depth), ' ');
      out += '}';
      return;
    }
    case json::kind::array: {
      const json::array& a = v.get_array();
      out += "[";
      for (std::size_t i = 0; i < a.size(); ++i) {
        out += i == 0 ? "" : ", ";
        pretty(a[i], depth + 1, out);
      }
      out += "]";
      return;
    }
    case json::kind::double_:
      out += std::isfinite(v.get_double()) ? fmt::format("{}", v.get_double()) : "null";
      return;
    default:
      out += json::serialize(v);
      return;
  }
}

}  // namespace

std::string pretty_json(const json::value& v) {
  std::string out;
  pretty(v, 0, out);
  return out + "\n";
}

LatencySummary summarize(const LatencyHistogram& h) {
  return {
      .p50 = h.percentile(50),
      .p90 = h.percentile(90),
      .p99 = h.percentile(99),
      .p999 = h.percentile(99.9),
      .max = h.max(),
      .mean = h.mean(),
  };
}

std::uint64_t ErrorCounts::total() const noexcept {
  std::uint64_t n = connect + write + read + timeout;
  for (const auto& [status, count] : status) {
    n += count;
  }
  return n;
}

ServerFigures server_figures(const MetricsSnapshot& before,
                             const MetricsSnapshot& after,
                             const std::optional<ProcUsage>& proc_before,
                             const std::optional<ProcUsage>& proc_after,
                             double elapsed_s,
                             std::uint64_t requests) {
  ServerFigures f;
  if (!before.empty() && !after.empty()) {
    f.clicks_stored = delta(before, after, "earnd_clicks_stored_total");
    f.clicks_dropped = delta(before, after, "earnd_clicks_dropped_total");
    f.bytes_written_per_click =
        ratio(delta(before, after, "earnd_ingest_bytes_written_total"), f.clicks_stored);
    f.mean_batch_size = ratio(delta(before, after, "earnd_ingest_batch_size_sum"),
                              delta(before, after, "earnd_ingest_batch_size_count"));
    if (auto s = ratio(delta(before, after, "earnd_ingest_commit_seconds_sum"),
                       delta(before, after, "earnd_ingest_commit_seconds_count"))) {
      f.mean_commit_us = *s * 1e6;
    }
    if (auto s = ratio(delta(before, after, "earnd_redirect_seconds_sum"),
                       delta(before, after, "earnd_redirect_seconds_count"))) {
      f.mean_redirect_us = *s * 1e6;
    }
  }

  // The server's own CPU counter wins; /proc is the fallback for a server that lacks it.
  if (auto cpu = delta(before, after, "process_cpu_seconds_total")) {
    f.cpu_seconds = cpu;
    f.cpu_source = "process_cpu_seconds_total";
  } else if (proc_before && proc_after) {
    f.cpu_seconds = proc_after->cpu_seconds - proc_before->cpu_seconds;
    f.rss_bytes = proc_after->rss_bytes;
    f.cpu_source = "/proc/<pid>/stat";
  } else {
    f.cpu_source = "skipped: no process_cpu_seconds_total and no --server-pid";
  }
  if (f.cpu_seconds && elapsed_s > 0) {
    f.cpu_cores_used = *f.cpu_seconds / elapsed_s;
  }
  if (f.cpu_seconds && requests > 0) {
    f.cpu_us_per_request = *f.cpu_seconds * 1e6 / static_cast<double>(requests);
  }
  if (!f.rss_bytes && proc_after) {
    f.rss_bytes = proc_after->rss_bytes;
  }
  return f;
}

std::string error_line(const ErrorCounts& e) {
  if (e.total() == 0) {
    return "none";
  }
  std::string out = fmt::format("connect {}, write {}, read {}, timeout {}", e.connect, e.write,
                                e.read, e.timeout);
  for (const auto& [status, n] : e.status) {
    out += fmt::format(", status {}: {}", status, n);
  }
  return out;
}

double RunResult::throughput_rps() const noexcept {
  return elapsed_s > 0 ? static_cast<double>(requests) / elapsed_s : 0;
}

double RunResult::redirect_rps() const noexcept {
  return elapsed_s > 0 ? static_cast<double>(redirects) / elapsed_s : 0;
}

json::object to_json(const RunResult& r) {
  json::object status;
  for (const auto& [code, n] : r.errors.status) {
    status[std::to_string(code)] = n;
  }
  json::object errors{{"total", r.errors.total()},   {"connect", r.errors.connect},
                      {"write", r.errors.write},     {"read", r.errors.read},
                      {"timeout", r.errors.timeout}, {"status", std::move(status)}};
  json::object latency{{"p50", r.latency.p50},   {"p90", r.latency.p90}, {"p99", r.latency.p99},
                       {"p999", r.latency.p999}, {"max", r.latency.max}, {"mean", r.latency.mean}};

  // Capacity counts the clicks redirected (302), not 404s or other refusals.
  double rps = r.redirect_rps();
  json::object capacity{{"rps_302", rps}, {"clicks_per_day", rps * 86400}};
  if (r.server.cpu_cores_used && *r.server.cpu_cores_used > 0) {
    capacity["rps_per_server_core"] = rps / *r.server.cpu_cores_used;
  } else {
    capacity["rps_per_server_core"] = nullptr;
  }

  return {
      {"tool", "earnbench"},
      {"scenario", scenario_json(r.scenario)},
      {"latency_measured_from",
       r.scenario.rate > 0 ? "intended send time (open loop)" : "send time (closed loop)"},
      {"requests", r.requests},
      {"duration_s", r.elapsed_s},
      {"throughput_rps", r.throughput_rps()},
      {"latency_us", std::move(latency)},
      {"redirects_302", r.redirects},
      {"new_connections", r.new_connections},
      {"bot_requests", r.bot_requests},
      {"errors", std::move(errors)},
      {"conversions", {{"sent", r.conversions_sent}, {"accepted", r.conversions_accepted}}},
      {"server", server_json(r.server)},
      {"capacity", std::move(capacity)},
      {"machine", {{"cpus", r.machine_cpus}}},
      {"interrupted", r.interrupted},
  };
}

std::string summary_text(const RunResult& r) {
  const Scenario& s = r.scenario;
  std::string out = fmt::format(
      "earnbench: {}, {} connections on {} threads, {} codes (zipf {}), bots {}, new connections "
      "{}, conversions {} per click\n",
      s.rate > 0 ? fmt::format("open loop at {} req/s",
                               s.rate < 100 ? fmt::format("{:g}", s.rate) : group_digits(s.rate))
                 : "closed loop",
      s.connections, s.threads, s.codes, s.zipf, percent(s.bot_share), percent(s.new_conn_share),
      s.conversions_per_click);
  out += fmt::format("  target      {}\n", s.url);
  if (r.interrupted) {
    out += fmt::format("  interrupted after {:.2f} s: the figures cover the part that ran\n",
                       r.elapsed_s);
  }
  out += fmt::format("  requests    {} in {:.2f} s = {} req/s\n", group_digits(r.requests),
                     r.elapsed_s, group_digits(r.throughput_rps()));
  out += fmt::format(
      "  latency     p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, max {} us (from {})\n",
      r.latency.p50, r.latency.p90, r.latency.p99, r.latency.p999, r.latency.max,
      s.rate > 0 ? "intended send time" : "send time");
  out += fmt::format("  responses   302: {}, other: {}\n", group_digits(r.redirects),
                     group_digits(r.requests - r.redirects));
  out += fmt::format("  errors      {}\n", error_line(r.errors));
  out += fmt::format("  conversions sent {}, accepted {}\n", r.conversions_sent,
                     r.conversions_accepted);
  // What makes the figures below something else than the server's capacity, said where they are.
  if (r.requests > r.redirects || r.errors.total() > 0) {
    out += fmt::format(
        "  warning     {} click requests failed or were not answered 302: the capacity below "
        "counts the 302 answers only\n",
        group_digits(static_cast<double>(r.errors.total())));
  }
  if (s.rate > 0 && r.throughput_rps() < 0.9 * s.rate) {
    out += fmt::format(
        "  warning     {} req/s answered of the {} offered: the server (or this machine) did not "
        "keep up; latencies, measured from intended send times, include the queueing\n",
        group_digits(r.throughput_rps()), group_digits(s.rate));
  }
  if (r.conversions_sent > r.conversions_accepted) {
    out +=
        fmt::format("  warning     {} conversions were refused (check the program key)\n",
                    group_digits(static_cast<double>(r.conversions_sent - r.conversions_accepted)));
  }
  out += server_lines(r);
  out += capacity_line(r);
  return out;
}

std::string group_digits(double v) {
  auto n = static_cast<std::uint64_t>(std::llround(std::max(0.0, v)));
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) {
      out += ',';
    }
    out += digits[i];
  }
  return out;
}

}  // namespace earnbench
