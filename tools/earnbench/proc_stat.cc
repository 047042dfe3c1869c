#include "earnbench/proc_stat.h"

#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <string>

namespace earnbench {

std::optional<ProcStat> parse_proc_stat(std::string_view line) noexcept {
  std::size_t close = line.rfind(')');
  if (close == std::string_view::npos) {
    return std::nullopt;
  }

  // After ") " come the fields numbered from 3 (state) in proc(5): utime is 14, stime 15,
  // rss 24.
  std::string_view rest = line.substr(close + 1);
  std::uint64_t utime = 0;
  std::uint64_t stime = 0;
  std::uint64_t rss = 0;
  int field = 2;
  while (!rest.empty() && field < 24) {
    while (!rest.empty() && rest.front() == ' ') {
      rest.remove_prefix(1);
    }
    std::size_t end = rest.find(' ');
    std::string_view token = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    ++field;

    std::uint64_t* target = field == 14 ? &utime : field == 15 ? &stime : field == 24 ? &rss
                                                                                        : nullptr;
    if (target != nullptr) {
      auto [p, ec] = std::from_chars(token.data(), token.data() + token.size(), *target);
      if (ec != std::errc() || p != token.data() + token.size()) {
        return std::nullopt;
      }
    }
  }
  if (field < 24) {
    return std::nullopt;
  }
  return ProcStat{.cpu_ticks = utime + stime, .rss_pages = rss};
}

std::optional<ProcUsage> read_proc_usage(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) {
    return std::nullopt;
  }
  std::string line((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto stat = parse_proc_stat(line);
  if (!stat) {
    return std::nullopt;
  }
  return ProcUsage{
      .cpu_seconds = static_cast<double>(stat->cpu_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK)),
      .rss_bytes = static_cast<double>(stat->rss_pages) * static_cast<double>(sysconf(_SC_PAGESIZE)),
  };
}

}  // namespace earnbench
