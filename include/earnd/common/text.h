#pragma once

// Checks on text that comes from outside (CSV files, headers) before earnd stores it in a
// document that is JSON on disk: JSON must be valid UTF-8, so such text is refused up front
// instead of making the document unreadable later.

#include <string_view>

namespace earnd {

// True when s is well-formed UTF-8 (RFC 3629: shortest forms only, no surrogates, at most
// U+10FFFF).
[[nodiscard]] bool is_valid_utf8(std::string_view s) noexcept;

// True when s is valid UTF-8 without ASCII control characters (U+0000 to U+001F and U+007F):
// fit for an identifier or a name shown to people.
[[nodiscard]] bool is_printable_utf8(std::string_view s) noexcept;

}  // namespace earnd
