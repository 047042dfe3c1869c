#pragma once

// Keyed XXH3 hashing. Visitor identity is a keyed hash of the client address and user agent, so
// the raw address is never stored; log lines name codes and users only by a keyed digest.

#include <array>
#include <cstdint>
#include <string_view>

namespace earnd {

class KeyedHasher {
 public:
  // Derives XXH3's secret from the configured secret text (any length, may be empty in tests).
  explicit KeyedHasher(std::string_view secret) noexcept;

  // Hash of the concatenation a|b with the key. Thread-safe (const), no allocation.
  std::uint64_t hash(std::string_view a, std::string_view b = {}) const noexcept;

  // A 16-hex-digit digest for logs.
  std::array<char, 16> digest(std::string_view text) const noexcept;

 private:
  alignas(64) std::array<std::uint8_t, 192> secret_{};
};

// Unkeyed XXH3 for non-secret uses (hash maps, checksums).
std::uint64_t xxh3(std::string_view data) noexcept;

}  // namespace earnd
