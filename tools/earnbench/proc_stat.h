#pragma once

// The CPU time and resident memory of another process on this machine, from /proc/<pid>/stat.
// earnbench uses it for the server's CPU per request when earnd does not export its own.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace earnbench {

struct ProcStat {
  std::uint64_t cpu_ticks = 0;  // utime + stime of every thread, in clock ticks.
  std::uint64_t rss_pages = 0;  // Resident set size, in pages.
};

// Parses the one line of /proc/<pid>/stat. The command name may hold blanks and parentheses,
// so fields are counted from its last ')'. Returns nullopt when the line is malformed.
std::optional<ProcStat> parse_proc_stat(std::string_view line) noexcept;

struct ProcUsage {
  double cpu_seconds = 0;
  double rss_bytes = 0;
};

// Reads /proc/<pid>/stat and converts with this machine's tick rate and page size. Returns
// nullopt when the process does not exist or cannot be read. Blocks on one small file read.
std::optional<ProcUsage> read_proc_usage(pid_t pid);

}  // namespace earnbench
