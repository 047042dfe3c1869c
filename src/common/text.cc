#include "earnd/common/text.h"

#include <cstdint>

namespace earnd {

bool is_valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    auto b = static_cast<std::uint8_t>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    std::uint32_t min = 0;
    if ((b & 0xe0) == 0xc0) {
      len = 2;
      cp = b & 0x1f;
      min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
      len = 3;
      cp = b & 0x0f;
      min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
      len = 4;
      cp = b & 0x07;
      min = 0x10000;
    } else {
      return false;  // a continuation byte first, or 0xf8..0xff
    }
    if (n - i < len) {
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      auto c = static_cast<std::uint8_t>(s[i + k]);
      if ((c & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

bool is_printable_utf8(std::string_view s) noexcept {
  for (char c : s) {
    auto b = static_cast<std::uint8_t>(c);
    if (b < 0x20 || b == 0x7f) {
      return false;
    }
  }
  return is_valid_utf8(s);
}

}  // namespace earnd
