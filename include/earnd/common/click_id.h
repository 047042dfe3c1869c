#pragma once

// Click ids: 16 bytes that sort by time. Layout, most significant first: 48 bits of Unix
// milliseconds, 8 bits of visitor shard, 72 random bits from OpenSSL's generator. Text form is
// 26 characters of lowercase Crockford base32, which keeps the byte order and is URL-safe.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace earnd {

inline constexpr std::size_t kClickIdBytes = 16;
inline constexpr std::size_t kClickIdTextLength = 26;
inline constexpr std::uint32_t kDefaultShardCount = 64;

struct ClickId {
  std::array<std::uint8_t, kClickIdBytes> bytes{};

  std::uint64_t ts_ms() const noexcept;
  std::uint8_t shard() const noexcept { return bytes[6]; }

  // Writes the 26-character text form into out (which must hold kClickIdTextLength chars).
  void to_text(char* out) const noexcept;
  std::string to_string() const;

  // Parses the text form, accepting either case; nullopt for anything else.
  static std::optional<ClickId> parse(std::string_view text) noexcept;

  // The raw bytes as a key for storage.
  std::string_view key() const noexcept {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }

  static std::optional<ClickId> from_key(std::string_view key) noexcept;

  auto operator<=>(const ClickId&) const = default;
};

// Makes a new id for time ts_ms and the given shard. Thread-safe: each thread keeps its own
// buffer of random bytes, refilled from OpenSSL's RAND_bytes; does not allocate after the first
// call on a thread.
ClickId make_click_id(std::uint64_t ts_ms, std::uint8_t shard) noexcept;

}  // namespace earnd
