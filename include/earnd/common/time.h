#pragma once

// Wall-clock time as Unix milliseconds, and its RFC 3339 text form on the wire.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace earnd {

// Now, in Unix milliseconds (system clock).
std::uint64_t now_ms() noexcept;

// Parses "2026-12-01T10:00:00Z", with optional fractional seconds and a numeric offset
// ("+01:00"). nullopt for anything else, including times before 1970.
std::optional<std::uint64_t> parse_rfc3339_ms(std::string_view text);

// "2026-12-01T10:00:00Z", or with milliseconds ("…:00.123Z") when they are not zero.
std::string format_rfc3339(std::uint64_t ms);

}  // namespace earnd
