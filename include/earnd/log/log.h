#pragma once

// One named logger per module, writing `key=value` lines to stderr:
//   ts=2026-12-03T10:00:00.123Z level=info module=server event=listening public=127.0.0.1:8080
// The backend (spdlog) stays behind this header's functions; callers format with fmt syntax.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include <spdlog/spdlog.h>

namespace earnd::log {

// Sets the level of every logger ("trace", "debug", "info", "warn", "error", "off") and the
// line format. Call once at startup before other threads run. Throws ConfigError on a bad level.
void init(std::string_view level);

// The logger for a module ("server", "http", "ingest", "store", "links", ...), created on first
// use. Thread-safe.
std::shared_ptr<spdlog::logger> get(std::string_view module);

// A warning that is emitted at most once per interval; the line reports how many were
// suppressed since the last one. Thread-safe and lock-free on the counting path.
class RateLimitedWarn {
 public:
  explicit RateLimitedWarn(std::chrono::milliseconds interval) : interval_ms_(interval.count()) {}

  // Counts one occurrence; returns the number of occurrences to report (the suppressed ones
  // plus this one) when the caller should log now, or 0 when it should stay quiet.
  std::uint64_t hit() noexcept;

 private:
  std::int64_t interval_ms_;
  std::atomic<std::int64_t> last_ms_{-1'000'000'000};
  std::atomic<std::uint64_t> pending_{0};
};

}  // namespace earnd::log
