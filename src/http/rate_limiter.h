#pragma once

// Token buckets keyed by a string (a program, a client address), for the conversion routes:
// each key may make `rate_per_s` requests per second on average and up to `burst` at once.
// Thread-safe (one mutex; the conversion routes are far from the redirect hot path).

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace earnd::http {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // rate_per_s 0 turns the limiter off (allow() is always true). max_keys bounds the memory:
  // when that many keys are tracked, idle ones (whose bucket has refilled) are forgotten; if
  // every tracked key is still busy, a new key is refused until some refill (a flood of new
  // keys must not reset the budgets of the keys already tracked).
  RateLimiter(double rate_per_s, double burst, std::size_t max_keys = 100'000);

  // Takes one token from key's bucket; false when it is empty. Does not allocate for a key
  // already tracked.
  bool allow(std::string_view key, Clock::time_point now = Clock::now());

  // Whole seconds until key has a token again (at least 1), for Retry-After.
  int retry_after_s() const noexcept;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point at;
  };

  void forget_idle(Clock::time_point now);

  double rate_;
  double burst_;
  std::size_t max_keys_;
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace earnd::http
