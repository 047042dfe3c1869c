#include "earnbench/duration.h"

#include <charconv>
#include <cmath>
#include <string>

#include <fmt/format.h>

namespace earnbench {
namespace {

// Nanoseconds per unit, or 0 for an unknown unit.
double unit_ns(std::string_view unit) noexcept {
  if (unit.empty() || unit == "s") {
    return 1e9;
  }
  if (unit == "ms") {
    return 1e6;
  }
  if (unit == "us" || unit == "\xc2\xb5s") {
    return 1e3;
  }
  if (unit == "ns") {
    return 1;
  }
  if (unit == "m" || unit == "min") {
    return 60e9;
  }
  if (unit == "h") {
    return 3600e9;
  }
  return 0;
}

}  // namespace

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) noexcept {
  while (!text.empty() && text.front() == ' ') {
    text.remove_prefix(1);
  }
  while (!text.empty() && text.back() == ' ') {
    text.remove_suffix(1);
  }

  // from_chars for double rejects a leading '+' and accepts "inf"; both are refused below.
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data() || !std::isfinite(value) || value < 0) {
    return std::nullopt;
  }

  double per_unit = unit_ns(text.substr(end - text.data()));
  if (per_unit == 0) {
    return std::nullopt;
  }
  double ns = value * per_unit;
  if (ns > 1e18) {
    return std::nullopt;
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(ns)));
}

std::string format_duration(std::chrono::nanoseconds d) {
  double ns = static_cast<double>(d.count());
  if (ns >= 60e9 && std::fmod(ns, 60e9) == 0) {
    return fmt::format("{}m", ns / 60e9);
  }
  if (ns >= 1e9) {
    return fmt::format("{}s", ns / 1e9);
  }
  if (ns >= 1e6) {
    return fmt::format("{}ms", ns / 1e6);
  }
  if (ns >= 1e3) {
    return fmt::format("{}us", ns / 1e3);
  }
  return fmt::format("{}ns", ns);
}

}  // namespace earnbench
