#include "earnd/log/log.h"

#include <mutex>
#include <string>

#include <spdlog/sinks/stdout_sinks.h>

#include "earnd/common/error.h"

namespace earnd::log {
namespace {

std::mutex g_mutex;  // guards creation of loggers only, never the logging itself
spdlog::level::level_enum g_level = spdlog::level::info;

std::shared_ptr<spdlog::sinks::sink> shared_sink() {
  static auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return sink;
}

}  // namespace

void init(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    throw ConfigError("config: log.level must be trace, debug, info, warn, error or off");
  }
  std::lock_guard lock(g_mutex);
  g_level = parsed;
  spdlog::set_pattern("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l module=%n %v", spdlog::pattern_time_type::utc);
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->set_level(parsed); });
}

std::shared_ptr<spdlog::logger> get(std::string_view module) {
  std::string name(module);
  std::lock_guard lock(g_mutex);
  if (auto existing = spdlog::get(name)) {
    return existing;
  }
  auto logger = std::make_shared<spdlog::logger>(name, shared_sink());
  logger->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%eZ level=%l module=%n %v",
                      spdlog::pattern_time_type::utc);
  logger->set_level(g_level);
  logger->flush_on(spdlog::level::info);
  spdlog::register_logger(logger);
  return logger;
}

std::uint64_t RateLimitedWarn::hit() noexcept {
  std::uint64_t n = pending_.fetch_add(1, std::memory_order_relaxed) + 1;
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count();
  std::int64_t last = last_ms_.load(std::memory_order_relaxed);
  if (now - last < interval_ms_) {
    return 0;
  }
  // Only the thread that wins the exchange reports; relaxed is enough because the counter is
  // the only data handed over and it is read with its own atomic exchange.
  if (!last_ms_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    return 0;
  }
  return pending_.exchange(0, std::memory_order_relaxed) + (n == 0 ? 1 : 0);
}

}  // namespace earnd::log
