#include "earnd/metrics/metrics.h"

#include <algorithm>

#include <fmt/format.h>


namespace earnd::metrics {
namespace {

constexpr const char* kRouteNames[] = {"redirect", "conversion", "health",
                                       "admin",    "metrics",    "other"};

void counter(std::string& out, const char* name, const char* help, std::uint64_t v) {
  fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name,
                 help, v);
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::observe(double v) noexcept {
  auto slot = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[slot].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

void Histogram::render(const std::string& name, const std::string& labels, std::string& out) const {
  std::uint64_t cumulative = 0;
  std::string sep = labels.empty() ? "" : ",";
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    fmt::format_to(std::back_inserter(out), "{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep,
                   bounds_[i], cumulative);
  }
  cumulative += counts_[bounds_.size()].load(std::memory_order_relaxed);
  fmt::format_to(std::back_inserter(out), "{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep,
                 cumulative);
  std::string braces = labels.empty() ? "" : "{" + labels + "}";
  fmt::format_to(std::back_inserter(out), "{}_sum{} {}\n{}_count{} {}\n", name, braces,
                 sum_.load(std::memory_order_relaxed), name, braces, cumulative);
}

Metrics::Metrics()
    : redirect_seconds({0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                        0.1, 0.25, 1.0}),
      batch_size({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}),
      commit_seconds({0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                      1.0}) {}

void Metrics::count_request(Listener l, Route r, unsigned status) noexcept {
  std::size_t idx = kStatuses.size();
  for (std::size_t i = 0; i < kStatuses.size(); ++i) {
    if (kStatuses[i] == status) {
      idx = i;
      break;
    }
  }
  requests_[static_cast<int>(l)][static_cast<int>(r)][idx].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::add_gauge(std::string name, std::string help, std::function<double()> read) {
  gauges_.push_back({std::move(name), std::move(help), std::move(read)});
}

std::string Metrics::render() const {
  std::string out;
  out.reserve(8192);
  out += "# HELP earnd_http_requests_total HTTP requests answered, by listener, route and status.\n"
         "# TYPE earnd_http_requests_total counter\n";
  for (int l = 0; l < 2; ++l) {
    for (int r = 0; r < kRouteCount; ++r) {
      for (std::size_t s = 0; s <= kStatuses.size(); ++s) {
        auto v = requests_[l][r][s].load(std::memory_order_relaxed);
        if (v == 0) {
          continue;
        }
        std::string status = s < kStatuses.size() ? std::to_string(kStatuses[s]) : "other";
        fmt::format_to(std::back_inserter(out),
                       "earnd_http_requests_total{{listener=\"{}\",route=\"{}\",status=\"{}\"}} {}\n",
                       l == 0 ? "public" : "admin", kRouteNames[r], status, v);
      }
    }
  }
  out += "# HELP earnd_redirect_seconds Time from a redirect request read to its response.\n"
         "# TYPE earnd_redirect_seconds histogram\n";
  redirect_seconds.render("earnd_redirect_seconds", "", out);
  out += "# HELP earnd_ingest_batch_size Clicks per storage write batch.\n"
         "# TYPE earnd_ingest_batch_size histogram\n";
  batch_size.render("earnd_ingest_batch_size", "", out);
  out += "# HELP earnd_ingest_commit_seconds Time to write and sync one batch.\n"
         "# TYPE earnd_ingest_commit_seconds histogram\n";
  commit_seconds.render("earnd_ingest_commit_seconds", "", out);

  out += "# HELP earnd_clicks_total Clicks classified, by reason (human for none).\n"
         "# TYPE earnd_clicks_total counter\n";
  for (std::size_t i = 0; i < reason_names_.size() && i < clicks_by_reason.size(); ++i) {
    fmt::format_to(std::back_inserter(out), "earnd_clicks_total{{reason=\"{}\"}} {}\n",
                   reason_names_[i], clicks_by_reason[i].load(std::memory_order_relaxed));
  }
  counter(out, "earnd_clicks_stored_total", "Clicks durably written.", clicks_stored.load());
  out += "# HELP earnd_clicks_dropped_total Clicks that could not be stored, by cause.\n"
         "# TYPE earnd_clicks_dropped_total counter\n";
  fmt::format_to(std::back_inserter(out),
                 "earnd_clicks_dropped_total{{cause=\"queue_full\"}} {}\n"
                 "earnd_clicks_dropped_total{{cause=\"storage\"}} {}\n",
                 clicks_dropped_queue_full.load(), clicks_dropped_storage.load());
  counter(out, "earnd_ingest_bytes_written_total", "Bytes of click batches handed to storage.",
          bytes_written.load());
  counter(out, "earnd_connections_rejected_total", "Connections closed at the connection cap.",
          connections_rejected.load());
  counter(out, "earnd_requests_rejected_total", "Requests refused while parsing (4xx).",
          requests_rejected_parse.load());
  fmt::format_to(std::back_inserter(out),
                 "# HELP earnd_connections_open Open client connections.\n"
                 "# TYPE earnd_connections_open gauge\nearnd_connections_open {}\n",
                 connections_open.load());
  for (const auto& g : gauges_) {
    fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", g.name,
                   g.help, g.read());
  }
  return out;
}

}  // namespace earnd::metrics
