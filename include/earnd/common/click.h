#pragma once

// A click as earnd stores it, its reason codes, and the compact binary codec used for the value
// in the clicks column family.

#include <cstdint>
#include <string>
#include <string_view>

#include "earnd/common/click_id.h"
#include "earnd/common/error.h"

namespace earnd {

// Why a click is not counted as a human one. kHuman is the only value that can be attributed.
// Values are stable: they are stored in every click record.
enum class ClickReason : std::uint8_t {
  kHuman = 0,
  kBotUa = 1,     // the user agent matches the crawler list
  kPreview = 2,   // a link-preview fetcher (chat and social apps unfurling the link)
  kPrefetch = 3,  // a browser prefetch or prerender announced in the request headers
  kHead = 4,      // a HEAD request: no person follows a link with HEAD
  kVelocity = 5,  // more clicks from one visitor in the velocity window than the limit
  kEmptyUa = 6,   // no User-Agent header at all
};

inline constexpr int kReasonCount = 7;

// The reason's name as used in exports and metrics ("" for kHuman).
std::string_view reason_name(ClickReason r) noexcept;

struct ClickRecord {
  ClickId id;
  std::uint64_t ts_ms = 0;
  std::uint64_t visitor_hash = 0;
  std::string program;
  std::string referrer_id;
  std::string code;
  std::string referer_host;
  bool unique = true;
  ClickReason reason = ClickReason::kHuman;
};

// Appends the binary form of c to out. Layout (version 1): version byte, flags byte (bit 0:
// unique), reason byte, ts_ms and visitor_hash as 8-byte big-endian, then program, referrer_id,
// code and referer_host each as a 1-byte length and bytes (each capped at 255 bytes). The click
// id is the key, not part of the value. Does not throw; may allocate when out grows.
void encode_click(const ClickRecord& c, std::string& out);

// Decodes a value written by encode_click; id is taken from the key. Errc::kCorruptRecord on a
// truncated or unknown record.
[[nodiscard]] Result<ClickRecord> decode_click(const ClickId& id, std::string_view value);

// The header of the click export CSV (earnctl export clicks, GET /v1/clicks/export).
inline constexpr std::string_view kClickCsvHeader =
    "click_id,ts_ms,program,referrer_id,code,visitor_hash,unique,reason\n";

// Appends one export row for c. Fields never hold commas or quotes (ids, codes and reasons are
// restricted to URL-safe characters). May allocate when out grows.
void append_click_csv(const ClickRecord& c, std::string& out);

}  // namespace earnd
