#include "earnd/links/destination.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <boost/url.hpp>

namespace earnd::links {
namespace {

namespace urls = boost::urls;

using ByteSet = std::array<bool, 256>;

constexpr unsigned char to_byte(char c) noexcept {
  return static_cast<unsigned char>(c);
}

// ALPHA, DIGIT and the extra characters given.
constexpr ByteSet make_byte_set(std::string_view extra) {
  ByteSet set{};
  for (int c = 0; c < 256; ++c) {
    set[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  }
  for (char c : extra) {
    set[to_byte(c)] = true;
  }
  return set;
}

// RFC 3986: unreserved for values, pchar for path segments, query for query parameters.
constexpr ByteSet kValueBytes = make_byte_set("-._~");
constexpr ByteSet kSegmentBytes = make_byte_set("-._~!$&'()*+,;=:@");
constexpr ByteSet kQueryBytes = make_byte_set("-._~!$&'()*+,;=:@/?");
constexpr ByteSet kHostNameBytes = make_byte_set("-_");

constexpr char kHexDigits[] = "0123456789ABCDEF";

constexpr bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

constexpr bool is_hex(char c) noexcept {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

constexpr unsigned hex_value(char c) noexcept {
  return is_digit(c) ? c - '0' : (to_byte(c) | 0x20) - 'a' + 10;
}

constexpr unsigned char to_lower(unsigned char c) noexcept {
  return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

// True when s[i] starts a valid %XX triplet.
bool is_triplet(std::string_view s, std::size_t i) noexcept {
  return s[i] == '%' && i + 2 < s.size() && is_hex(s[i + 1]) && is_hex(s[i + 2]);
}

bool ci_equal(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return to_lower(to_byte(x)) == to_lower(to_byte(y));
         });
}

// ---------------------------------------------------------------------------------------------
// Hot path: scanning and appending.

void append_pct(unsigned char c, std::string& out) {
  const char triplet[3] = {'%', kHexDigits[c >> 4], kHexDigits[c & 0xf]};
  out.append(triplet, 3);
}

// Appends s, keeping bytes in safe as they are, percent-encoding all others. With keep_triplets,
// a valid %XX stays as it is (a lone '%' still becomes %25).
void append_encoded(std::string_view s, const ByteSet& safe, bool keep_triplets, std::string& out) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t run = i;
    while (run < s.size() && safe[to_byte(s[run])]) {
      ++run;
    }
    out.append(s.data() + i, run - i);
    if (run == s.size()) {
      return;
    }

    const bool triplet = keep_triplets && is_triplet(s, run);
    if (triplet) {
      out.append(s.data() + run, 3);
    } else {
      append_pct(to_byte(s[run]), out);
    }
    i = run + (triplet ? 3 : 1);
  }
}

// Cuts the text up to the next delimiter off rest and returns it.
std::string_view take_until(std::string_view& rest, char delimiter) noexcept {
  const std::size_t end = rest.find(delimiter);
  const std::string_view piece = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  return piece;
}

// Returns the parameter that starts at query[pos] and moves pos past it and its '&'. Plain
// loops here and below: parameters are short, and a memchr call costs more than the scan.
std::string_view next_param(std::string_view query, std::size_t& pos) noexcept {
  const std::size_t start = pos;
  while (pos < query.size() && query[pos] != '&') {
    ++pos;
  }
  return query.substr(start, pos++ - start);
}

std::string_view param_name(std::string_view param) noexcept {
  std::size_t end = 0;
  while (end < param.size() && param[end] != '=') {
    ++end;
  }
  return param.substr(0, end);
}

// Returns the byte at s[i] with %XX decoded and ASCII letters lowered, and moves i past it.
unsigned char next_name_byte(std::string_view s, std::size_t& i) noexcept {
  if (is_triplet(s, i)) {
    i += 3;
    return to_lower(static_cast<unsigned char>(hex_value(s[i - 2]) * 16 + hex_value(s[i - 1])));
  }
  return to_lower(to_byte(s[i++]));
}

// Parameter names are compared decoded and without case, so that an encoded or upper-case
// spelling of a reserved name cannot get past the filters.
bool same_name(std::string_view a, std::string_view b) noexcept {
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < a.size() && j < b.size()) {
    if (next_name_byte(a, i) != next_name_byte(b, j)) {
      return false;
    }
  }
  return i == a.size() && j == b.size();
}

// A parameter name with a cheap key of its decoded, lowercased form (length, first and last
// byte): names that same_name() calls equal have equal keys, so most comparisons end at the key.
// Trivially constructible, so that a NameSet on the stack costs nothing until it is used.
struct Name {
  const char* data;
  std::size_t size;
  std::uint64_t key;

  std::string_view text() const noexcept { return {data, size}; }
};

// A triplet's '%' never sits inside another triplet, so counting valid triplets gives the
// decoded length, and a triplet ending the text is always read as one.
Name make_name(std::string_view text) noexcept {
  if (text.empty()) {
    return {.data = text.data(), .size = 0, .key = 0};
  }
  std::size_t triplets = 0;
  for (std::size_t i = 0; i + 2 < text.size(); ++i) {
    triplets += is_triplet(text, i) ? 1 : 0;
  }

  std::size_t front = 0;
  std::size_t back = text.size() - 1;
  if (text.size() >= 3 && is_triplet(text, text.size() - 3)) {
    back = text.size() - 3;
  }
  const std::uint64_t length = text.size() - 2 * triplets;
  const std::uint64_t first = next_name_byte(text, front);
  const std::uint64_t last = next_name_byte(text, back);
  return {.data = text.data(), .size = text.size(), .key = length << 16 | first << 8 | last};
}

bool same(const Name& a, const Name& b) noexcept {
  return a.key == b.key && same_name(a.text(), b.text());
}

bool query_has_name(std::string_view query, const Name& name) noexcept {
  std::size_t pos = 0;
  while (pos < query.size()) {
    if (same(make_name(param_name(next_param(query, pos))), name)) {
      return true;
    }
  }
  return false;
}

// The ref and click parameter names; an empty one reserves nothing.
struct ReservedNames {
  Name ref;
  Name click;

  bool has(const Name& name) const noexcept {
    return (ref.size != 0 && same(ref, name)) || (click.size != 0 && same(click, name));
  }
};

// The names a Location already carries, kept on the stack. Destination names past
// kDestinationSlots are not stored but scanned from overflow, which keeps room for every
// forwarded incoming name.
class NameSet {
 public:
  static constexpr std::size_t kDestinationSlots = 32;

  // User-provided, so that even value-initialization leaves entries_ unwritten.
  NameSet() noexcept {}

  bool has_room_for_destination() const noexcept { return size_ < kDestinationSlots; }

  void add(const Name& name) noexcept {
    if (size_ < entries_.size()) {
      entries_[size_++] = name;
    }
  }

  // Keeps the first rest given: the destination's parameters from the first unstored one on.
  void set_overflow(std::string_view rest) noexcept {
    if (overflow_.empty()) {
      overflow_ = rest;
    }
  }

  bool contains(const Name& name) const noexcept {
    for (std::size_t i = 0; i < size_; ++i) {
      if (same(entries_[i], name)) {
        return true;
      }
    }
    return !overflow_.empty() && query_has_name(overflow_, name);
  }

 private:
  std::array<Name, kDestinationSlots + kMaxForwardedParams> entries_;
  std::size_t size_ = 0;
  std::string_view overflow_;
};

// True for ".", ".." and their spellings with %2e, which browsers resolve the same way.
bool is_dot_segment(std::string_view segment, std::size_t dots) noexcept {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < segment.size(); ++seen) {
    if (segment[i] == '.') {
      i += 1;
    } else if (is_triplet(segment, i) && segment[i + 1] == '2' && (segment[i + 2] | 0x20) == 'e') {
      i += 3;
    } else {
      return false;
    }
  }
  return seen == dots;
}

// Writes '?' before the first parameter and '&' between the others.
struct QueryAppender {
  std::string& out;
  bool opened = false;
  bool any = false;

  void open() {
    if (!opened) {
      out += '?';
      opened = true;
    }
  }

  void separate() {
    if (any) {
      out += '&';
    }
    open();
    any = true;
  }
};

// Everything the query part of one Location needs while it is being written. A constructor
// rather than aggregate initialization: GCC clears a whole aggregate, NameSet's slots included.
struct QueryMerge {
  QueryMerge(const LocationParts& parts, std::string& out) noexcept
      : reserved{.ref = make_name(parts.ref_param), .click = make_name(parts.click_param)},
        query{.out = out} {}

  ReservedNames reserved;
  NameSet names;
  QueryAppender query;
};

void append_deep_path(std::string_view deep_path, std::string& out) {
  while (!deep_path.empty()) {
    const std::string_view segment = take_until(deep_path, '/');
    if (segment.empty() || is_dot_segment(segment, 1) || is_dot_segment(segment, 2)) {
      continue;
    }
    if (out.empty() || out.back() != '/') {
      out += '/';
    }
    append_encoded(segment, kSegmentBytes, true, out);
  }
}

void append_own_params(const ParsedDestination& dest, QueryMerge& merge) {
  if (dest.has_query) {
    merge.query.open();
  }
  const std::string_view query = dest.query;
  std::size_t pos = 0;
  while (pos < query.size()) {
    const std::size_t start = pos;
    const std::string_view param = next_param(query, pos);
    const Name name = make_name(param_name(param));
    if (param.empty() || merge.reserved.has(name)) {
      continue;
    }

    if (merge.names.has_room_for_destination()) {
      merge.names.add(name);
    } else {
      merge.names.set_overflow(query.substr(start));
    }
    merge.query.separate();
    merge.query.out.append(param);
  }
}

void append_incoming_params(std::string_view incoming, QueryMerge& merge) {
  std::size_t pos = 0;
  std::size_t looked_at = 0;
  while (pos < incoming.size() && looked_at < kMaxForwardedParams) {
    const std::string_view param = next_param(incoming, pos);
    if (param.empty()) {
      continue;
    }
    ++looked_at;

    const Name name = make_name(param_name(param));
    if (name.size == 0 || merge.reserved.has(name) || merge.names.contains(name)) {
      continue;
    }
    merge.names.add(name);
    merge.query.separate();
    append_encoded(param, kQueryBytes, true, merge.query.out);
  }
}

void append_pair(std::string_view name, std::string_view value, QueryAppender& query) {
  if (name.empty() || value.empty()) {
    return;
  }
  query.separate();
  append_encoded(name, kValueBytes, false, query.out);
  query.out += '=';
  append_encoded(value, kValueBytes, false, query.out);
}

// An upper bound of what build_location appends: every input byte grows to at most three, and
// each separator ('/', '?', '&', '=', '#') is either counted in its input or in the constant.
std::size_t location_bound(const ParsedDestination& dest, const LocationParts& parts) noexcept {
  const std::size_t added = parts.ref_param.size() + parts.ref_value.size() +
                            parts.click_param.size() + parts.click_value.size();
  return dest.base.size() + dest.query.size() + dest.fragment.size() +
         3 * (parts.deep_path.size() + parts.incoming_query.size() + added) + 16;
}

// ---------------------------------------------------------------------------------------------
// Admin path: checking and normalizing a destination with Boost.URL.

struct Outcome {
  DestinationError error = DestinationError::kNone;
  ParsedDestination value;
};

Outcome rejected(DestinationError error) {
  Outcome outcome;
  outcome.error = error;
  return outcome;
}

// True when a byte above 0x7e sits in the authority, so the error can point at the host.
bool non_ascii_in_authority(std::string_view url) noexcept {
  const std::size_t start = url.find("//");
  if (start == std::string_view::npos) {
    return false;
  }
  std::string_view authority = url.substr(start + 2);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  return std::any_of(authority.begin(), authority.end(), [](char c) { return to_byte(c) > 0x7e; });
}

DestinationError check_bytes(std::string_view url) noexcept {
  if (url.empty()) {
    return DestinationError::kEmpty;
  }
  if (url.size() > kMaxDestinationBytes) {
    return DestinationError::kTooLong;
  }
  const auto control = [](char c) { return to_byte(c) <= 0x20 || to_byte(c) == 0x7f; };
  if (std::any_of(url.begin(), url.end(), control)) {
    return DestinationError::kControlOrSpace;
  }
  if (std::none_of(url.begin(), url.end(), [](char c) { return to_byte(c) > 0x7f; })) {
    return DestinationError::kNone;
  }
  return non_ascii_in_authority(url) ? DestinationError::kNonAsciiHost
                                     : DestinationError::kNonAscii;
}

// Letters, digits, '-' and '_' in labels of 1 to 63 bytes, 253 bytes at most.
bool is_host_name(std::string_view host) noexcept {
  if (host.size() > 253) {
    return false;
  }
  std::size_t label = 0;
  for (char c : host) {
    if (c == '.' && label == 0) {
      return false;
    }
    label = c == '.' ? 0 : label + 1;
    if (label > 63 || (c != '.' && !kHostNameBytes[to_byte(c)])) {
      return false;
    }
  }
  return label != 0;
}

// Browsers parse a host whose last label is a decimal or 0x number as IPv4 and fail when the
// whole is not a valid address; Boost.URL calls it a name. Such names are refused.
bool ends_in_number(std::string_view host) noexcept {
  const std::string_view last = host.substr(host.rfind('.') + 1);
  if (!last.empty() && std::all_of(last.begin(), last.end(), is_digit)) {
    return true;
  }
  return last.size() >= 2 && last[0] == '0' && (last[1] | 0x20) == 'x' &&
         std::all_of(last.begin() + 2, last.end(), is_hex);
}

DestinationError check_host(const urls::url_view& u) noexcept {
  switch (u.host_type()) {
    case urls::host_type::ipv4:
    case urls::host_type::ipv6:
      return DestinationError::kNone;
    case urls::host_type::name: {
      const std::string_view host = u.encoded_host();
      return is_host_name(host) && !ends_in_number(host) ? DestinationError::kNone
                                                         : DestinationError::kBadHost;
    }
    default:
      return DestinationError::kBadHost;
  }
}

DestinationError check_structure(const urls::url_view& u) noexcept {
  if (u.scheme_id() != urls::scheme::http && u.scheme_id() != urls::scheme::https) {
    return DestinationError::kScheme;
  }
  if (!u.has_authority() || u.encoded_host().empty()) {
    return DestinationError::kNoHost;
  }
  if (u.has_userinfo()) {
    return DestinationError::kUserinfo;
  }

  // Boost.URL 1.81 reads "http://h:8a0/" as port "8" and path "a0/"; RFC 3986 wants the path
  // after an authority to be empty or to start with '/'.
  const std::string_view path = u.encoded_path();
  if (!path.empty() && path.front() != '/') {
    return DestinationError::kMalformed;
  }
  return check_host(u);
}

// The port part of the normalized URL: "" for none, an empty port or the scheme's default,
// else ':' and the number without leading zeros. nullopt for 0 and values above 65535.
std::optional<std::string> normalized_port(const urls::url_view& u) {
  std::uint32_t number = 0;
  for (char c : u.port()) {
    number = number * 10 + static_cast<std::uint32_t>(c - '0');
    if (!is_digit(c) || number > 65535) {
      return std::nullopt;
    }
  }

  const std::uint32_t default_port = u.scheme_id() == urls::scheme::https ? 443 : 80;
  if (u.port().empty() || number == default_port) {
    return std::string();
  }
  if (number == 0) {
    return std::nullopt;
  }
  return ":" + std::to_string(number);
}

// The longest run of two or more zero groups, the first of equal ones: {start, length}.
std::pair<int, int> longest_zero_run(const std::array<std::uint16_t, 8>& groups) noexcept {
  std::pair<int, int> best{-1, 0};
  for (int i = 0; i < 8;) {
    int end = i;
    while (end < 8 && groups[end] == 0) {
      ++end;
    }
    if (end - i >= 2 && end - i > best.second) {
      best = {i, end - i};
    }
    i = end == i ? i + 1 : end;
  }
  return best;
}

// RFC 5952 text in brackets. Boost.URL 1.81's to_string() compresses a single zero group
// ("::1:0:1:0:1:0:1"), which neither the RFC nor browsers do.
std::string ipv6_text(const urls::ipv6_address& address) {
  const urls::ipv6_address::bytes_type bytes = address.to_bytes();
  std::array<std::uint16_t, 8> groups{};
  for (std::size_t i = 0; i < groups.size(); ++i) {
    groups[i] = static_cast<std::uint16_t>(bytes[2 * i] << 8 | bytes[2 * i + 1]);
  }

  const auto [zero_start, zero_length] = longest_zero_run(groups);
  std::string text = "[";
  for (int i = 0; i < 8; ++i) {
    if (i == zero_start) {
      text += "::";
      i += zero_length - 1;
      continue;
    }
    if (!text.ends_with(':') && i != 0) {
      text += ':';
    }
    char hex[8];
    const auto written = std::to_chars(hex, hex + sizeof hex, groups[i], 16);
    text.append(hex, written.ptr);
  }
  return text + "]";
}

// Lowercase names and IPv4 addresses; IPv6 in RFC 5952 form within brackets.
std::string normalized_host(const urls::url_view& u) {
  if (u.host_type() == urls::host_type::ipv6) {
    return ipv6_text(u.host_ipv6_address());
  }
  std::string host(u.encoded_host());
  std::transform(host.begin(), host.end(), host.begin(), [](char c) { return to_lower(c); });
  return host;
}

// Resolves "." and ".." segments as browsers do for http(s): a dot segment in last place leaves
// a trailing '/', and ".." never climbs above the root. The result starts with '/'.
std::string resolve_dot_segments(std::string_view path) {
  if (!path.empty() && path.front() == '/') {
    path.remove_prefix(1);
  }
  std::vector<std::string_view> segments;
  bool last = false;
  while (!last) {
    last = path.find('/') == std::string_view::npos;
    const std::string_view segment = take_until(path, '/');
    const bool up = is_dot_segment(segment, 2);
    if (up && !segments.empty()) {
      segments.pop_back();
    }
    if (!up && !is_dot_segment(segment, 1)) {
      segments.push_back(segment);
    } else if (last) {
      segments.push_back({});
    }
  }

  std::string resolved;
  for (std::string_view segment : segments) {
    resolved += '/';
    resolved += segment;
  }
  return resolved;
}

// The pieces are put together by hand rather than through Boost.URL's setters: in 1.81,
// set_encoded_path("/") yields "/./" and normalize_path() decodes %2F into a separator.
ParsedDestination assemble(const urls::url_view& u, std::string_view host, std::string_view port) {
  ParsedDestination dest;
  dest.base = u.scheme_id() == urls::scheme::https ? "https://" : "http://";
  dest.base.append(host).append(port).append(resolve_dot_segments(u.encoded_path()));
  dest.has_query = u.has_query();
  dest.query = std::string(u.encoded_query());
  dest.has_fragment = u.has_fragment();
  dest.fragment = std::string(u.encoded_fragment());

  dest.normalized = dest.base;
  if (dest.has_query) {
    dest.normalized.append("?").append(dest.query);
  }
  if (dest.has_fragment) {
    dest.normalized.append("#").append(dest.fragment);
  }
  return dest;
}

bool entry_matches(std::string_view entry, std::string_view host, urls::host_type type) noexcept {
  if (ci_equal(entry, host)) {
    return true;
  }
  if (type == urls::host_type::ipv6) {
    return ci_equal(entry, host.substr(1, host.size() - 2));
  }
  if (type != urls::host_type::name || !entry.starts_with("*.")) {
    return false;
  }
  const std::string_view suffix = entry.substr(1);
  return host.size() > suffix.size() && ci_equal(host.substr(host.size() - suffix.size()), suffix);
}

bool host_allowed(std::string_view host,
                  urls::host_type type,
                  std::span<const std::string> allowed_hosts) noexcept {
  return std::any_of(allowed_hosts.begin(), allowed_hosts.end(),
                     [&](const std::string& entry) { return entry_matches(entry, host, type); });
}

Outcome parse_checked(std::string_view url, std::span<const std::string> allowed_hosts) {
  if (const DestinationError error = check_bytes(url); error != DestinationError::kNone) {
    return rejected(error);
  }
  const auto view = urls::parse_uri(url);
  if (!view) {
    return rejected(DestinationError::kMalformed);
  }
  if (const DestinationError error = check_structure(*view); error != DestinationError::kNone) {
    return rejected(error);
  }

  const std::optional<std::string> port = normalized_port(*view);
  if (!port) {
    return rejected(DestinationError::kBadPort);
  }
  const std::string host = normalized_host(*view);
  if (!host_allowed(host, view->host_type(), allowed_hosts)) {
    return rejected(DestinationError::kHostNotAllowed);
  }
  Outcome accepted;
  accepted.value = assemble(*view, host, *port);
  return accepted;
}

}  // namespace

Result<ParsedDestination> parse_destination(std::string_view url,
                                            std::span<const std::string> allowed_hosts) {
  Outcome outcome = parse_checked(url, allowed_hosts);
  if (outcome.error != DestinationError::kNone) {
    return make_error_code(Errc::kInvalidArgument);
  }
  return std::move(outcome.value);
}

DestinationError diagnose_destination(std::string_view url,
                                      std::span<const std::string> allowed_hosts) {
  return parse_checked(url, allowed_hosts).error;
}

std::string_view destination_error_reason(DestinationError error) noexcept {
  switch (error) {
    case DestinationError::kNone:
      return "";
    case DestinationError::kEmpty:
      return "destination is empty";
    case DestinationError::kTooLong:
      static_assert(kMaxDestinationBytes == 2048, "update the reason below");
      return "destination is longer than 2048 bytes";
    case DestinationError::kControlOrSpace:
      return "destination contains a space or a control character; percent-encode it";
    case DestinationError::kNonAscii:
      return "destination contains raw non-ASCII characters; percent-encode them";
    case DestinationError::kNonAsciiHost:
      return "destination host is not ASCII; give it in punycode form (xn--)";
    case DestinationError::kMalformed:
      return "destination is not a valid URL; look for a bad %XX escape or a character that "
             "must be percent-encoded";
    case DestinationError::kScheme:
      return "destination scheme must be http or https";
    case DestinationError::kNoHost:
      return "destination must be an absolute URL with a host, like https://host/path";
    case DestinationError::kUserinfo:
      return "destination must not contain a user name or password";
    case DestinationError::kBadHost:
      return "destination host must be a DNS name, an IPv4 address or a bracketed IPv6 address";
    case DestinationError::kBadPort:
      return "destination port must be between 1 and 65535";
    case DestinationError::kHostNotAllowed:
      return "destination host is not in the program's allowed_hosts";
  }
  return "destination is invalid";
}

void build_location(const ParsedDestination& dest, const LocationParts& parts, std::string& out) {
  out.reserve(out.size() + location_bound(dest, parts));
  out.append(dest.base);
  append_deep_path(parts.deep_path, out);

  QueryMerge merge(parts, out);
  append_own_params(dest, merge);
  append_incoming_params(parts.incoming_query, merge);
  append_pair(parts.ref_param, parts.ref_value, merge.query);
  append_pair(parts.click_param, parts.click_value, merge.query);

  if (dest.has_fragment) {
    out += '#';
    out.append(dest.fragment);
  }
}

}  // namespace earnd::links
