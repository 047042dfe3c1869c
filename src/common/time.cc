#include "earnd/common/time.h"

#include <algorithm>
#include <chrono>
#include <sstream>

#include <date/date.h>

namespace earnd {

std::uint64_t now_ms() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

namespace {

bool digits(std::string_view s, std::size_t at, std::size_t n) {
  for (std::size_t i = at; i < at + n; ++i) {
    if (i >= s.size() || s[i] < '0' || s[i] > '9') {
      return false;
    }
  }
  return true;
}

// The RFC 3339 shape, YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), checked before the
// date library parses it: its parser reads wider fields than the format allows (a minute of
// "000") into a floating-point intermediate that the fuzzer found to overflow (UBSan).
bool rfc3339_shape(std::string_view s) {
  if (!(digits(s, 0, 4) && s[4] == '-' && digits(s, 5, 2) && s[7] == '-' && digits(s, 8, 2) &&
        s[10] == 'T' && digits(s, 11, 2) && s[13] == ':' && digits(s, 14, 2) && s[16] == ':' &&
        digits(s, 17, 2))) {
    return false;
  }
  std::size_t at = 19;
  if (at < s.size() && s[at] == '.') {
    std::size_t start = ++at;
    while (at < s.size() && s[at] >= '0' && s[at] <= '9') {
      ++at;
    }
    if (at == start || at - start > 9) {
      return false;
    }
  }
  std::string_view zone = s.substr(std::min(at, s.size()));
  if (zone == "Z") {
    return true;
  }
  if (!(zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && digits(zone, 1, 2) &&
        zone[3] == ':' && digits(zone, 4, 2))) {
    return false;
  }
  // RFC 3339's time-numoffset: hours 00-23, minutes 00-59.
  return (zone[1] - '0') * 10 + (zone[2] - '0') <= 23 && zone[4] <= '5';
}

}  // namespace

std::optional<std::uint64_t> parse_rfc3339_ms(std::string_view text) {
  if (text.size() < 20 || text.size() > 40 || !rfc3339_shape(text)) {
    return std::nullopt;
  }
  using Ms = date::sys_time<std::chrono::milliseconds>;
  for (const char* format : {"%FT%TZ", "%FT%T%Ez"}) {
    std::istringstream in{std::string(text)};
    Ms tp;
    in >> date::parse(format, tp);
    if (!in.fail() && in.peek() == std::char_traits<char>::eof()) {
      auto ms = tp.time_since_epoch().count();
      if (ms < 0) {
        return std::nullopt;
      }
      return static_cast<std::uint64_t>(ms);
    }
  }
  return std::nullopt;
}

std::string format_rfc3339(std::uint64_t ms) {
  date::sys_time<std::chrono::milliseconds> tp{std::chrono::milliseconds(ms)};
  if (ms % 1000 == 0) {
    return date::format("%FT%TZ", date::floor<std::chrono::seconds>(tp));
  }
  return date::format("%FT%TZ", tp);
}

}  // namespace earnd
