#pragma once

// Parsing of the human-written durations that earnbench takes on its command line and in
// scenario files: "10s", "500ms", "1.5s", "2m", "250us", or a bare number of seconds.

#include <chrono>
#include <optional>
#include <string_view>

namespace earnbench {

// Parses a non-negative duration: a decimal number followed by one of the units h, m, s, ms,
// us (or µs) and ns; a bare number means seconds. Returns nullopt for anything else,
// including negative values and empty input. Pure, thread-safe, does not allocate.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) noexcept;

// Formats a duration the way parse_duration reads it back, choosing the largest unit that
// keeps the value readable ("10s", "500ms", "1.5s"). Allocates the returned string.
std::string format_duration(std::chrono::nanoseconds d);

}  // namespace earnbench
