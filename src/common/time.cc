#include "earnd/common/time.h"

#include <chrono>
#include <sstream>

#include <date/date.h>

namespace earnd {

std::uint64_t now_ms() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

std::optional<std::uint64_t> parse_rfc3339_ms(std::string_view text) {
  if (text.size() < 20 || text.size() > 40) {
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
