#include "click_format.h"

namespace earnd::store::detail {
namespace {

constexpr std::uint8_t kFormat2 = 2;
constexpr std::uint8_t kFlagUnique = 1;
constexpr std::uint8_t kFlagOwnTime = 2;

}  // namespace

std::string LinkDictionary::key(std::uint32_t number) {
  std::string k(kPrefix);
  for (int i = 3; i >= 0; --i) {
    k.push_back(static_cast<char>((number >> (8 * i)) & 0xff));
  }
  return k;
}

std::string LinkDictionary::text_of(std::string_view program,
                                    std::string_view referrer_id,
                                    std::string_view code) {
  std::string t;
  t.reserve(program.size() + referrer_id.size() + code.size() + 2);
  t.append(program).push_back('\0');
  t.append(referrer_id).push_back('\0');
  t.append(code);
  return t;
}

LinkDictionary::Entry& LinkDictionary::append_locked(std::uint32_t number, std::string text) {
  Entry& e = entries_[number];
  e.text = std::move(text);
  std::string_view t = e.text;
  auto a = t.find('\0');
  auto b = t.find('\0', a + 1);
  e.program = t.substr(0, a);
  e.referrer_id = t.substr(a + 1, b - a - 1);
  e.code = t.substr(b + 1);
  numbers_.emplace(e.text, number);
  return e;
}

bool LinkDictionary::load(std::string_view key, std::string_view value) {
  if (key.size() != kPrefix.size() + 4 || !key.starts_with(kPrefix)) {
    return false;
  }
  auto a = value.find('\0');
  if (a == std::string_view::npos || value.find('\0', a + 1) == std::string_view::npos) {
    return false;
  }
  std::uint32_t n = 0;
  for (std::size_t i = kPrefix.size(); i < key.size(); ++i) {
    n = (n << 8) | static_cast<unsigned char>(key[i]);
  }
  // Numbers are dense; a gap (which only a damaged store could have) is left as an empty entry
  // that find() reports as unknown.
  if (n > (1u << 28)) {
    return false;
  }
  std::unique_lock lock(mutex_);
  while (entries_.size() <= n) {
    entries_.emplace_back();
  }
  Entry& e = append_locked(n, std::string(value));
  e.durable.store(true, std::memory_order_relaxed);
  return true;
}

std::pair<std::uint32_t, bool> LinkDictionary::number_for(const std::string& text) {
  {
    std::shared_lock lock(mutex_);
    if (auto it = numbers_.find(text); it != numbers_.end()) {
      return {it->second, !entries_[it->second].durable.load(std::memory_order_acquire)};
    }
  }
  std::unique_lock lock(mutex_);
  if (auto it = numbers_.find(text); it != numbers_.end()) {
    return {it->second, !entries_[it->second].durable.load(std::memory_order_acquire)};
  }
  auto n = static_cast<std::uint32_t>(entries_.size());
  entries_.emplace_back();
  append_locked(n, text);
  return {n, true};
}

const LinkDictionary::Entry* LinkDictionary::find(std::uint32_t number) const {
  std::shared_lock lock(mutex_);
  if (number >= entries_.size() || entries_[number].text.empty()) {
    return nullptr;
  }
  return &entries_[number];
}

void LinkDictionary::mark_durable(std::uint32_t number) {
  std::shared_lock lock(mutex_);
  if (number < entries_.size()) {
    entries_[number].durable.store(true, std::memory_order_release);
  }
}

std::size_t LinkDictionary::size() const {
  std::shared_lock lock(mutex_);
  return entries_.size();
}

void put_varint(std::uint32_t v, std::string& out) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool get_varint(std::string_view& in, std::uint32_t& v) {
  v = 0;
  for (int shift = 0; shift <= 28; shift += 7) {
    if (in.empty()) {
      return false;
    }
    auto b = static_cast<unsigned char>(in[0]);
    in.remove_prefix(1);
    v |= static_cast<std::uint32_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      return true;
    }
  }
  return false;
}

void encode_click_v2(const ClickRecord& c, std::uint32_t number, std::string& out) {
  bool own_time = c.ts_ms != c.id.ts_ms();
  out.push_back(static_cast<char>(kFormat2));
  out.push_back(static_cast<char>((c.unique ? kFlagUnique : 0) | (own_time ? kFlagOwnTime : 0)));
  out.push_back(static_cast<char>(c.reason));
  put_be(c.visitor_hash, 8, out);
  if (own_time) {
    put_be(c.ts_ms, 8, out);
  }
  put_varint(number, out);
  std::size_t n = std::min<std::size_t>(c.referer_host.size(), 255);
  out.push_back(static_cast<char>(n));
  out.append(c.referer_host.data(), n);
}

std::optional<std::uint64_t> stored_visitor_hash(std::string_view v) noexcept {
  // Format 2: version, flags, reason, visitor hash. Format 1: version, flags, reason, ts_ms,
  // visitor hash.
  if (!v.empty() && static_cast<unsigned char>(v[0]) == kFormat2 && v.size() >= 3 + 8) {
    return get_be(v.data() + 3, 8);
  }
  if (!v.empty() && v[0] == 1 && v.size() >= 3 + 8 + 8) {
    return get_be(v.data() + 3 + 8, 8);
  }
  return std::nullopt;
}

Result<ClickRecord> decode_stored_click(const ClickId& id,
                                        std::string_view v,
                                        const LinkDictionary& dict) {
  if (v.empty() || static_cast<unsigned char>(v[0]) != kFormat2) {
    return decode_click(id, v);
  }
  if (v.size() < 3 + 8) {
    return make_error_code(Errc::kCorruptRecord);
  }
  auto flags = static_cast<std::uint8_t>(v[1]);
  auto reason = static_cast<std::uint8_t>(v[2]);
  if (reason >= kReasonCount) {
    return make_error_code(Errc::kCorruptRecord);
  }
  ClickRecord c;
  c.id = id;
  c.unique = (flags & kFlagUnique) != 0;
  c.reason = static_cast<ClickReason>(reason);
  c.visitor_hash = get_be(v.data() + 3, 8);
  v.remove_prefix(3 + 8);
  c.ts_ms = id.ts_ms();
  if ((flags & kFlagOwnTime) != 0) {
    if (v.size() < 8) {
      return make_error_code(Errc::kCorruptRecord);
    }
    c.ts_ms = get_be(v.data(), 8);
    v.remove_prefix(8);
  }
  std::uint32_t number = 0;
  if (!get_varint(v, number) || v.empty() || v.size() < 1 + static_cast<unsigned char>(v[0])) {
    return make_error_code(Errc::kCorruptRecord);
  }
  c.referer_host.assign(v.substr(1, static_cast<unsigned char>(v[0])));
  const auto* e = dict.find(number);
  if (e == nullptr) {
    return make_error_code(Errc::kCorruptRecord);
  }
  c.program.assign(e->program);
  c.referrer_id.assign(e->referrer_id);
  c.code.assign(e->code);
  return c;
}

}  // namespace earnd::store::detail
