#include "earnd/common/hash.h"

#define XXH_INLINE_ALL  // inlined XXH3 is measurably faster on short inputs (see bench/)
#include <xxhash.h>

namespace earnd {

KeyedHasher::KeyedHasher(std::string_view secret) noexcept {
  // XXH3_generateSecret accepts any seed length, including zero.
  (void)XXH3_generateSecret(secret_.data(), secret_.size(), secret.data(), secret.size());
}

std::uint64_t KeyedHasher::hash(std::string_view a, std::string_view b) const noexcept {
  XXH3_state_t state;
  XXH3_64bits_reset_withSecret(&state, secret_.data(), secret_.size());
  XXH3_64bits_update(&state, a.data(), a.size());
  // A separator byte keeps ("ab","c") and ("a","bc") apart.
  const char sep = '\x1f';
  XXH3_64bits_update(&state, &sep, 1);
  XXH3_64bits_update(&state, b.data(), b.size());
  return XXH3_64bits_digest(&state);
}

std::array<char, 16> KeyedHasher::digest(std::string_view text) const noexcept {
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint64_t h = hash(text);
  std::array<char, 16> out{};
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[h & 15];
    h >>= 4;
  }
  return out;
}

std::uint64_t xxh3(std::string_view data) noexcept { return XXH3_64bits(data.data(), data.size()); }

}  // namespace earnd
