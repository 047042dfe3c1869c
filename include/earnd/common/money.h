#pragma once

// Bounds on amounts of money (integers of minor units) and the overflow-safe sum every module
// uses where it adds them up. The bounds make sure that no total earnd stores or reports can
// leave the range of std::int64_t: see "Money bounds" in docs/behaviour.md.

#include <cstdint>
#include <limits>

namespace earnd {

// The largest amount_minor of one conversion, and of a reward rule's fixed_minor, max_minor and
// min_minor (10^15: ten trillion in a currency of cents).
inline constexpr std::int64_t kMaxAmountMinor = 1'000'000'000'000'000;

// The largest lifetime sum of one program's sale amounts, and of its referrer rewards
// (10^18, a thousand times kMaxAmountMinor and under a ninth of INT64_MAX). A conversion that
// would take either past it is refused with amount_overflow. Every report, balance and payout
// of the program sums a subset of these (refunds, reversals and payments take away at most
// what was added), so each stays within -kMaxTotalMinor..kMaxTotalMinor.
inline constexpr std::int64_t kMaxTotalMinor = 1'000'000'000'000'000'000;

// a + b, held at INT64_MAX or INT64_MIN instead of overflowing. Within the bounds above it is
// plain addition; the saturation only keeps damaged or pre-bound data from undefined behaviour.
constexpr std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    return b > 0 ? std::numeric_limits<std::int64_t>::max()
                 : std::numeric_limits<std::int64_t>::min();
  }
  return sum;
}

// a - b, held at the ends of the range like saturating_add.
constexpr std::int64_t saturating_sub(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t diff = 0;
  if (__builtin_sub_overflow(a, b, &diff)) {
    return b < 0 ? std::numeric_limits<std::int64_t>::max()
                 : std::numeric_limits<std::int64_t>::min();
  }
  return diff;
}

}  // namespace earnd
