#pragma once

// The layout of the conversion counters in the stats family: per (program, referrer, 15-minute
// bucket), an array of counters summed by the merge operator. The unattributed conversions of a
// program count under referrer "".

#include <string>
#include <string_view>

namespace earnd::store {

enum StatIndex : int {
  kStatSignups = 0,
  kStatSales = 1,
  kStatRevenueMinor = 2,
  kStatRefunds = 3,
  kStatRefundedMinor = 4,
  kStatRewardsMinor = 5,
  kStatCount = 6,
};

// program \0 referrer \0; the bucket's 4 big-endian bytes follow in each key.
inline std::string stats_prefix(std::string_view program, std::string_view referrer_id) {
  std::string k(program);
  k.push_back('\0');
  k.append(referrer_id).push_back('\0');
  return k;
}

}  // namespace earnd::store
