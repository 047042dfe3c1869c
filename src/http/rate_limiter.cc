#include "rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace earnd::http {

RateLimiter::RateLimiter(double rate_per_s, double burst, std::size_t max_keys)
    : rate_(rate_per_s),
      burst_(std::max(1.0, burst)),
      max_keys_(std::max<std::size_t>(1, max_keys)) {}

bool RateLimiter::allow(std::string_view key, Clock::time_point now) {
  if (rate_ <= 0) {
    return true;
  }
  std::lock_guard lock(mutex_);
  auto it = buckets_.find(std::string(key));
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) {
      forget_idle(now);
      if (buckets_.size() >= max_keys_) {
        return false;  // every tracked key is busy: no room to judge a new one fairly
      }
    }
    it = buckets_.emplace(std::string(key), Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  double elapsed = std::chrono::duration<double>(now - b.at).count();
  b.tokens = std::min(burst_, b.tokens + std::max(0.0, elapsed) * rate_);
  b.at = std::max(b.at, now);
  if (b.tokens < 1) {
    return false;
  }
  b.tokens -= 1;
  return true;
}

int RateLimiter::retry_after_s() const noexcept {
  return rate_ <= 0 ? 1 : std::max(1, static_cast<int>(std::ceil(1.0 / rate_)));
}

void RateLimiter::forget_idle(Clock::time_point now) {
  std::erase_if(buckets_, [&](const auto& kv) {
    double elapsed = std::chrono::duration<double>(now - kv.second.at).count();
    return kv.second.tokens + elapsed * rate_ >= burst_;
  });
}

}  // namespace earnd::http
