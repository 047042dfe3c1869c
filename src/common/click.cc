#include "earnd/common/click.h"

#include <algorithm>
#include <cstdio>

namespace earnd {
namespace {

constexpr std::uint8_t kCodecVersion = 1;

void put_u64(std::uint64_t v, std::string& out) {
  char b[8];
  for (int i = 7; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out.append(b, 8);
}

void put_str(std::string_view s, std::string& out) {
  std::size_t n = std::min<std::size_t>(s.size(), 255);
  out.push_back(static_cast<char>(n));
  out.append(s.data(), n);
}

// Reads fields from a value, remembering whether any read ran past the end.
class Reader {
 public:
  explicit Reader(std::string_view v) : v_(v) {}

  std::uint8_t u8() {
    if (v_.empty()) {
      ok_ = false;
      return 0;
    }
    auto b = static_cast<std::uint8_t>(v_[0]);
    v_.remove_prefix(1);
    return b;
  }

  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v = (v << 8) | u8();
    }
    return v;
  }

  std::string str() {
    std::size_t n = u8();
    if (v_.size() < n) {
      ok_ = false;
      return {};
    }
    std::string s(v_.substr(0, n));
    v_.remove_prefix(n);
    return s;
  }

  bool ok() const { return ok_; }

 private:
  std::string_view v_;
  bool ok_ = true;
};

}  // namespace

std::string_view reason_name(ClickReason r) noexcept {
  switch (r) {
    case ClickReason::kHuman:
      return "";
    case ClickReason::kBotUa:
      return "bot_ua";
    case ClickReason::kPreview:
      return "preview";
    case ClickReason::kPrefetch:
      return "prefetch";
    case ClickReason::kHead:
      return "head";
    case ClickReason::kVelocity:
      return "velocity";
    case ClickReason::kEmptyUa:
      return "empty_ua";
  }
  return "unknown";
}

void encode_click(const ClickRecord& c, std::string& out) {
  out.push_back(static_cast<char>(kCodecVersion));
  out.push_back(static_cast<char>(c.unique ? 1 : 0));
  out.push_back(static_cast<char>(c.reason));
  put_u64(c.ts_ms, out);
  put_u64(c.visitor_hash, out);
  put_str(c.program, out);
  put_str(c.referrer_id, out);
  put_str(c.code, out);
  put_str(c.referer_host, out);
}

Result<ClickRecord> decode_click(const ClickId& id, std::string_view value) {
  Reader r(value);
  if (r.u8() != kCodecVersion) {
    return make_error_code(Errc::kCorruptRecord);
  }
  ClickRecord c;
  c.id = id;
  c.unique = (r.u8() & 1) != 0;
  std::uint8_t reason = r.u8();
  c.reason = static_cast<ClickReason>(reason);
  c.ts_ms = r.u64();
  c.visitor_hash = r.u64();
  c.program = r.str();
  c.referrer_id = r.str();
  c.code = r.str();
  c.referer_host = r.str();
  if (!r.ok() || reason >= kReasonCount) {
    return make_error_code(Errc::kCorruptRecord);
  }
  return c;
}

void append_click_csv(const ClickRecord& c, std::string& out) {
  char id[kClickIdTextLength];
  c.id.to_text(id);
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx", static_cast<unsigned long long>(c.visitor_hash));
  out.append(id, kClickIdTextLength);
  out += ',';
  out += std::to_string(c.ts_ms);
  out += ',';
  out += c.program;
  out += ',';
  out += c.referrer_id;
  out += ',';
  out += c.code;
  out += ',';
  out.append(hash, 16);
  out += c.unique ? ",1," : ",0,";
  out += reason_name(c.reason);
  out += '\n';
}

}  // namespace earnd
