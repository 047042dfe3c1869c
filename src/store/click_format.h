#pragma once

// The stored form of clicks (format 2), private to the store module. A click names its program,
// referrer and link code through a number from LinkDictionary instead of repeating the text in
// its record and in its visitor-index entry; docs/storage.md has the byte layouts and why.

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/unordered/unordered_flat_map.hpp>

#include "earnd/common/click.h"
#include "earnd/common/error.h"

namespace earnd::store::detail {

// Big-endian integers of `bytes` bytes, as keys and records store them (so keys sort by value).
inline void put_be(std::uint64_t v, int bytes, std::string& out) {
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

inline std::uint64_t get_be(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  }
  return v;
}

// Numbers for (program, referrer id, code) triples, dense from 0, kept in the meta family under
// "n/" + 4 big-endian bytes with the value "program\0referrer\0code". A triple gets its number
// the first time a click names it; the number is written in the same atomic write as that click
// (or just before it, when the WAL is off), and until one such write succeeded every click
// batch naming it writes it again, so no stored click names a number that is not stored.
// Entries are never removed or changed. Memory grows with the number of distinct triples (about
// the number of links), not with the number of clicks. Thread-safe.
class LinkDictionary {
 public:
  struct Entry {
    std::string text;  // program \0 referrer \0 code
    std::string_view program;
    std::string_view referrer_id;
    std::string_view code;
    std::atomic<bool> durable{false};
  };

  static constexpr std::string_view kPrefix = "n/";
  static std::string key(std::uint32_t number);
  static std::string text_of(std::string_view program,
                             std::string_view referrer_id,
                             std::string_view code);

  // Adds a stored entry (at open). False when the key or value is malformed.
  bool load(std::string_view key, std::string_view value);

  // The number for the triple whose text is `text`, making one when there is none; second is
  // true while the entry is not known to be stored.
  std::pair<std::uint32_t, bool> number_for(const std::string& text);

  // The entry, or null for an unknown number. The entry stays valid while the dictionary lives.
  const Entry* find(std::uint32_t number) const;

  void mark_durable(std::uint32_t number);

  std::size_t size() const;

 private:
  Entry& append_locked(std::uint32_t number, std::string text);

  mutable std::shared_mutex mutex_;
  std::deque<Entry> entries_;  // by number; a deque keeps entries in place as it grows
  boost::unordered_flat_map<std::string, std::uint32_t> numbers_;
};

// Record layout, format 2: version byte (2), flags (bit 0 unique, bit 1 ts_ms differs from the
// click id's time and follows the visitor hash), reason byte, visitor hash (8 bytes BE),
// [ts_ms, 8 bytes BE], the dictionary number (LEB128 varint), referer host (1-byte length and
// bytes).
void encode_click_v2(const ClickRecord& c, std::uint32_t number, std::string& out);

// The visitor hash of a stored record of either format, read without decoding the rest (how
// Store::clicks_at skips other visitors' clicks of a millisecond cheaply); nullopt when the
// record is too short or of an unknown version.
std::optional<std::uint64_t> stored_visitor_hash(std::string_view value) noexcept;

// Decodes format 1 (earnd::decode_click) and format 2 records.
Result<ClickRecord> decode_stored_click(const ClickId& id,
                                        std::string_view value,
                                        const LinkDictionary& dict);

void put_varint(std::uint32_t v, std::string& out);
bool get_varint(std::string_view& in, std::uint32_t& v);

}  // namespace earnd::store::detail
