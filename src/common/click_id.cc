#include "earnd/common/click_id.h"

#include <cstring>

#include <openssl/rand.h>

namespace earnd {
namespace {

constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

// Maps a character to its 5-bit value, or -1. Accepts upper case and the Crockford aliases.
int decode_char(char c) noexcept {
  if (c >= 'A' && c <= 'Z') {
    c = static_cast<char>(c - 'A' + 'a');
  }
  if (c == 'o') {
    c = '0';
  } else if (c == 'i' || c == 'l') {
    c = '1';
  }
  const char* p = std::strchr(kAlphabet, c);
  return (c != '\0' && p != nullptr) ? static_cast<int>(p - kAlphabet) : -1;
}

// A per-thread pool of random bytes so that each id costs no system call.
class RandomPool {
 public:
  void take(std::uint8_t* out, std::size_t n) noexcept {
    if (used_ + n > sizeof(buf_)) {
      refill();
    }
    std::memcpy(out, buf_ + used_, n);
    used_ += n;
  }

 private:
  void refill() noexcept {
    if (RAND_bytes(buf_, sizeof(buf_)) != 1) {
      // OpenSSL's generator failing is not recoverable for an id that promises unpredictability.
      std::abort();
    }
    used_ = 0;
  }

  std::uint8_t buf_[4096];
  std::size_t used_ = sizeof(buf_);
};

}  // namespace

std::uint64_t ClickId::ts_ms() const noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 6; ++i) {
    v = (v << 8) | bytes[i];
  }
  return v;
}

void ClickId::to_text(char* out) const noexcept {
  // 128 bits read as a big-endian stream, 5 bits at a time; the last char holds 3 bits + 2 zero.
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t o = 0;
  for (std::uint8_t b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out[o++] = kAlphabet[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  out[o] = kAlphabet[(acc << (5 - bits)) & 31];
}

std::string ClickId::to_string() const {
  std::string s(kClickIdTextLength, '0');
  to_text(s.data());
  return s;
}

std::optional<ClickId> ClickId::parse(std::string_view text) noexcept {
  if (text.size() != kClickIdTextLength) {
    return std::nullopt;
  }
  ClickId id;
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t o = 0;
  for (char c : text) {
    int v = decode_char(c);
    if (v < 0) {
      return std::nullopt;
    }
    acc = (acc << 5) | static_cast<std::uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      if (o < kClickIdBytes) {
        id.bytes[o++] = static_cast<std::uint8_t>(acc >> (bits - 8));
      }
      bits -= 8;
    }
  }
  // The two padding bits must be zero so that each id has exactly one text form.
  if ((acc & ((1u << bits) - 1)) != 0) {
    return std::nullopt;
  }
  return id;
}

std::optional<ClickId> ClickId::from_key(std::string_view key) noexcept {
  if (key.size() != kClickIdBytes) {
    return std::nullopt;
  }
  ClickId id;
  std::memcpy(id.bytes.data(), key.data(), kClickIdBytes);
  return id;
}

ClickId make_click_id(std::uint64_t ts_ms, std::uint8_t shard) noexcept {
  thread_local RandomPool pool;
  ClickId id;
  for (int i = 5; i >= 0; --i) {
    id.bytes[i] = static_cast<std::uint8_t>(ts_ms & 0xff);
    ts_ms >>= 8;
  }
  id.bytes[6] = shard;
  pool.take(id.bytes.data() + 7, kClickIdBytes - 7);
  return id;
}

}  // namespace earnd
