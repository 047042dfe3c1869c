#pragma once

// Link destinations: checking and normalizing the URL an admin saves for a program or link
// (admin path, Boost.URL), and building the redirect Location from it on every click (hot path,
// no URL parsing: scanning and appending only). Whatever reaches a Location here has only bytes
// from 0x21 to 0x7e, so a request can never break the header or leave the allowed host.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "earnd/common/error.h"

namespace earnd::links {

// Longest destination URL parse_destination accepts, in bytes.
inline constexpr std::size_t kMaxDestinationBytes = 2048;

// Only this many incoming query parameters are looked at for one Location; later ones are
// dropped, which bounds the name comparisons a long hostile query can cause.
inline constexpr std::size_t kMaxForwardedParams = 32;

// A destination split once, when it is saved, so a redirect only concatenates. All fields hold
// the normalized form and contain only bytes from 0x21 to 0x7e.
struct ParsedDestination {
  // scheme://host[:port]/path, without query or fragment; the path is at least "/".
  std::string base;
  // The query without its '?', byte for byte as given ('+' and %XX untouched).
  std::string query;
  // The fragment without its '#', byte for byte as given.
  std::string fragment;
  // The whole normalized URL: base, then '?' query if has_query, then '#' fragment if has_fragment.
  std::string normalized;
  // True when the URL had a '?' (even with nothing after it).
  bool has_query = false;
  // True when the URL had a '#' (even with nothing after it).
  bool has_fragment = false;
};

// Why a destination was rejected. Values are stable: they may appear in logs and metrics.
enum class DestinationError {
  kNone = 0,
  kEmpty,
  kTooLong,
  kControlOrSpace,
  kNonAscii,
  kNonAsciiHost,
  kMalformed,
  kScheme,
  kNoHost,
  kUserinfo,
  kBadHost,
  kBadPort,
  kHostNotAllowed,
};

// Checks and normalizes an absolute http or https URL whose host is on allowed_hosts.
//
// Accepted: scheme http or https (any case), an authority with a host and no userinfo, at most
// kMaxDestinationBytes bytes, valid RFC 3986 syntax. Every byte must be printable ASCII (0x21 to
// 0x7e): spaces, controls (CR, LF, NUL, tab, DEL) and raw bytes above 0x7f are rejected, never
// encoded, so the admin sees exactly what will be sent. The host is a DNS name of letters,
// digits, '-', '_' and '.' with no empty label (253 bytes at most, 63 per label), a dotted-decimal
// IPv4 address, or a bracketed IPv6 address. A name whose last label is numeric ("1.2.3.08",
// "foo.0x4") is rejected, as browsers would read it as a malformed IPv4 address. Hosts with
// percent-encoding or raw non-ASCII bytes are rejected: an international host must be given in
// its punycode form ("xn--..."), which is accepted as is (punycode is not decoded or checked).
// LIMIT: there is no IDNA (Boost.URL 1.81 has none), so "faß.example" is refused rather than
// converted to "xn--fa-hia.example"; admins convert it themselves. A UTS 46 mapping would fix it.
//
// Normalized: scheme and host to lowercase; IPv6 in its RFC 5952 text form; the default port
// (80 for http, 443 for https) and an empty port removed, leading zeros of a port dropped; "."
// and ".." path segments (also written %2e) resolved as a browser would; an empty path becomes
// "/". Percent-encoding in path, query and fragment is kept byte for byte, hex case included,
// since signed URLs and some servers compare them raw.
//
// allowed_hosts: entries compared case-insensitively with the normalized host. "*.example.com"
// allows every subdomain of example.com but not example.com itself; an IPv6 entry is written in
// RFC 5952 form, with or without brackets; an empty list allows nothing.
//
// Returns Errc::kInvalidArgument on any failure; diagnose_destination() says why. Thread-safe,
// allocates; the result owns its strings and nothing refers to the arguments.
[[nodiscard]] Result<ParsedDestination> parse_destination(
    std::string_view url, std::span<const std::string> allowed_hosts);

// Returns the reason parse_destination() rejects url with these allowed_hosts, or kNone when it
// accepts it. The allow-list is checked last, so kHostNotAllowed means the URL is otherwise
// valid. Thread-safe, allocates; meant for the admin API's error answer.
[[nodiscard]] DestinationError diagnose_destination(std::string_view url,
                                                    std::span<const std::string> allowed_hosts);

// A one-sentence reason for an admin, for the message of a 400 invalid_destination answer.
// The view refers to static storage; "" for kNone. Thread-safe, does not allocate.
[[nodiscard]] std::string_view destination_error_reason(DestinationError error) noexcept;

// Per-request inputs to build_location. Views only; they must outlive the call.
struct LocationParts {
  // The request target's query without its '?', raw as the client sent it; "" for none.
  std::string_view incoming_query;
  // The raw path after "/r/{code}/", or "" for none. Pass "" when the program forbids deep links.
  std::string_view deep_path;
  // Name and value of the referral parameter, e.g. "ref" and the link code.
  std::string_view ref_param;
  std::string_view ref_value;
  // Name and value of the click parameter, e.g. "earnd_cid" and the click id text. An empty
  // value adds no click id but still keeps parameters of that name out of the Location.
  std::string_view click_param;
  std::string_view click_value;
};

// Appends the redirect Location for dest and parts to out, in this order:
//   1. dest.base, then the deep path joined with exactly one '/'. The deep path is split on '/';
//      empty, "." and ".." segments (also written with %2e) are dropped, not resolved, so it
//      can only go below the destination path. In a segment, valid %XX is kept and any byte
//      outside RFC 3986 pchar is percent-encoded ('\\', '?', '#' and a lone '%' included).
//   2. '?' and the destination's own parameters as given, except empty ones and those named
//      like ref_param or click_param, which are dropped so that the pair added in step 4 is the
//      only one.
//   3. Incoming parameters, skipping empty ones, those without a name, those named like
//      ref_param or click_param (nobody can spoof them), those named like a destination
//      parameter (the destination wins) and repeats of an earlier incoming name (the first
//      wins). Only the first kMaxForwardedParams non-empty ones are looked at. Valid %XX and
//      '+' are kept, a lone '%' becomes %25, and every byte not allowed in an RFC 3986 query
//      becomes %XX: controls, space, '"', '#', '<', '>', '[', '\\', ']', '^', '`', '{', '|',
//      '}', DEL and non-ASCII.
//   4. ref_param=ref_value and click_param=click_value, each only when both its name and
//      value are non-empty, with every byte but ALPHA, DIGIT, '-', '.', '_' and '~'
//      percent-encoded ('%' too). A non-empty name is dropped from steps 2 and 3 even when its
//      value is empty: pass the program's click_param with an empty click_value to redirect
//      without a click id and still keep a client's own click id out.
//   5. '#' and dest.fragment, when dest.has_fragment.
// Names are compared after decoding %XX and ignoring ASCII case ("%52EF" counts as "ref");
// '+' is not read as a space. Every byte appended is in 0x21..0x7e, so the result can go into
// a header as is. Thread-safe for distinct out strings. First reserves out.size() plus an upper
// bound of what it appends (the destination's length, three times the other inputs' lengths,
// and 16), so it allocates at most once, and not at all when out's capacity covers that; it
// can throw only std::bad_alloc.
//
// LIMIT: dot segments are recognized in their URL spellings only; a server that reads "..;"
// or "..%2f" as ".." may still climb above the destination path. That stays on the allowed
// host, so it is not an open redirect; dropping such segments too would remove it.
void build_location(const ParsedDestination& dest, const LocationParts& parts, std::string& out);

}  // namespace earnd::links
