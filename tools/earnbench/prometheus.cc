#include "earnbench/prometheus.h"

#include <cstdlib>

namespace earnbench {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// The end of the series part of a line: after the closing brace of the labels (label values
// may hold spaces and escaped quotes), or at the first blank when there are no labels.
std::size_t series_end(std::string_view line) {
  std::size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ' && line[i] != '\t') {
    ++i;
  }
  if (i == line.size() || line[i] != '{') {
    return i;
  }
  bool quoted = false;
  for (++i; i < line.size(); ++i) {
    if (quoted && line[i] == '\\') {
      ++i;
    } else if (line[i] == '"') {
      quoted = !quoted;
    } else if (!quoted && line[i] == '}') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

std::optional<double> parse_value(std::string_view text) {
  // The value is followed by an optional timestamp; strtod stops at the blank.
  std::string copy(text.substr(0, text.find_first_of(" \t")));
  if (copy.empty()) {
    return std::nullopt;
  }
  char* end = nullptr;
  double v = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size()) {
    return std::nullopt;
  }
  return v;
}

std::string_view metric_name(std::string_view series) {
  return series.substr(0, series.find('{'));
}

}  // namespace

MetricsSnapshot MetricsSnapshot::parse(std::string_view text) {
  MetricsSnapshot out;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty() || line.front() == '#') {
      continue;
    }

    std::size_t end = series_end(line);
    if (end == std::string_view::npos || end == 0) {
      continue;
    }
    if (auto v = parse_value(trim(line.substr(end)))) {
      out.series_[std::string(line.substr(0, end))] = *v;
    }
  }
  return out;
}

std::optional<double> MetricsSnapshot::value(std::string_view series) const {
  auto it = series_.find(series);
  if (it == series_.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::optional<double> MetricsSnapshot::sum(std::string_view name) const {
  std::optional<double> total;
  // Series of one metric sort together: `name` itself, then `name{...}`.
  for (auto it = series_.lower_bound(name); it != series_.end(); ++it) {
    if (!it->first.starts_with(name)) {
      break;
    }
    if (metric_name(it->first) == name) {
      total = total.value_or(0) + it->second;
    }
  }
  return total;
}

std::optional<double> delta(const MetricsSnapshot& before,
                            const MetricsSnapshot& after,
                            std::string_view name) {
  auto b = before.sum(name);
  auto a = after.sum(name);
  if (!a || !b) {
    return std::nullopt;
  }
  return *a - *b;
}

}  // namespace earnbench
