#pragma once

// Reading earnd's /metrics page (Prometheus text format) into numbers that earnbench can
// subtract: one value per series, found by metric name with or without labels.

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace earnbench {

class MetricsSnapshot {
 public:
  // Parses the exposition text. Comment lines, blank lines and lines that do not parse are
  // skipped; a trailing timestamp is ignored. Allocates one map entry per series.
  static MetricsSnapshot parse(std::string_view text);

  // The value of the series written exactly as `series` (e.g. `earnd_clicks_stored_total` or
  // `earnd_clicks_total{reason="bot_ua"}`), or nullopt if absent.
  std::optional<double> value(std::string_view series) const;

  // The sum over every series of the metric `name`, whatever its labels (so a labelled counter
  // reads as its total), or nullopt if there is none.
  std::optional<double> sum(std::string_view name) const;

  bool empty() const noexcept { return series_.empty(); }

 private:
  std::map<std::string, double, std::less<>> series_;  // Series as written -> value.
};

// after - before for a metric summed over its labels, or nullopt when either lacks it.
std::optional<double> delta(const MetricsSnapshot& before,
                            const MetricsSnapshot& after,
                            std::string_view name);

}  // namespace earnbench
