#include "redirect.h"

#include <array>
#include <charconv>

#include <boost/beast/http/field.hpp>

#include "earnd/common/click_id.h"
#include "earnd/ingest/bot_classifier.h"

namespace bhttp = boost::beast::http;
namespace ip = boost::asio::ip;

namespace earnd::http {
namespace {

constexpr std::string_view kNotFoundPage =
    "<!doctype html><meta charset=\"utf-8\"><title>Link not found</title>"
    "<p>This referral link does not exist or is no longer active.</p>\n";

bool contains_token(std::string_view value, std::string_view token) noexcept {
  if (value.size() < token.size()) {
    return false;
  }
  for (std::size_t i = 0; i + token.size() <= value.size(); ++i) {
    bool eq = true;
    for (std::size_t j = 0; j < token.size() && eq; ++j) {
      eq = std::tolower(static_cast<unsigned char>(value[i + j])) == token[j];
    }
    if (eq) {
      return true;
    }
  }
  return false;
}

std::string_view header(const Request& req, bhttp::field f) noexcept {
  auto it = req.find(f);
  return it == req.end() ? std::string_view() : std::string_view(it->value());
}

std::string_view header(const Request& req, std::string_view name) noexcept {
  auto it = req.find(name);
  return it == req.end() ? std::string_view() : std::string_view(it->value());
}

// Browsers announce speculative loads; such a request is not a person's click.
bool is_prefetch(const Request& req) noexcept {
  for (std::string_view name : {"Sec-Purpose", "Purpose", "X-Purpose", "X-Moz"}) {
    std::string_view v = header(req, name);
    if (contains_token(v, "prefetch") || contains_token(v, "prerender") ||
        contains_token(v, "preview")) {
      return true;
    }
  }
  return false;
}

ClickReason classify(const RedirectEnv& env, const Request& req) noexcept {
  if (req.method() == bhttp::verb::head) {
    return ClickReason::kHead;
  }
  if (is_prefetch(req)) {
    return ClickReason::kPrefetch;
  }
  return env.services.bots.classify(header(req, bhttp::field::user_agent));
}

void append_u64(std::uint64_t v, std::string& out) {
  char buf[20];
  auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, p);
}

Reply not_found_or_fallback(const std::string& fallback) {
  if (!fallback.empty()) {
    Reply r{302, "text/plain", "", {}};
    r.headers.emplace_back("Location", fallback);
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
  }
  Reply r{404, "text/html; charset=utf-8", std::string(kNotFoundPage), {}};
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

}  // namespace

std::uint64_t visitor_hash(const RedirectEnv& env, const Request& req, const ip::address& peer) {
  ip::address client = client_address(req, peer, env.proxies);
  if (client.is_v6() && client.to_v6().is_v4_mapped()) {
    client = ip::make_address_v4(ip::v4_mapped, client.to_v6());
  }
  std::string_view ua = header(req, bhttp::field::user_agent);
  if (client.is_v4()) {
    auto b = client.to_v4().to_bytes();
    return env.hasher.hash(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), ua);
  }
  auto b = client.to_v6().to_bytes();
  return env.hasher.hash(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()), ua);
}

TrustedProxies::TrustedProxies(const std::vector<std::string>& entries) {
  for (const auto& e : entries) {
    boost::system::error_code ec;
    std::string cidr = e.find('/') == std::string::npos
                           ? e + (e.find(':') == std::string::npos ? "/32" : "/128")
                           : e;
    if (cidr.find(':') == std::string::npos) {
      v4_.push_back(ip::make_network_v4(cidr, ec));
    } else {
      v6_.push_back(ip::make_network_v6(cidr, ec));
    }
    if (ec) {
      throw ConfigError("config: server.trusted_proxies entry \"" + e +
                        "\" is not an address or CIDR");
    }
  }
}

bool TrustedProxies::contains(const ip::address& a) const noexcept {
  if (a.is_v4()) {
    for (const auto& n : v4_) {
      if (ip::network_v4(a.to_v4(), 32).is_subnet_of(n) || n.address() == a.to_v4()) {
        return true;
      }
    }
    return false;
  }
  for (const auto& n : v6_) {
    if (ip::network_v6(a.to_v6(), 128).is_subnet_of(n) || n.address() == a.to_v6()) {
      return true;
    }
  }
  return false;
}

ip::address client_address(const Request& req,
                           const ip::address& peer,
                           const TrustedProxies& proxies) {
  if (proxies.empty() || !proxies.contains(peer)) {
    return peer;
  }
  // Several X-Forwarded-For lines are one list in their order (RFC 9110, 5.3): a proxy that
  // adds a line of its own puts it last. Read from the right, up to the first address that is
  // not a trusted proxy.
  constexpr std::size_t kMaxLines = 16;
  std::array<std::string_view, kMaxLines> lines;
  std::size_t n = 0;
  auto [first, last] = req.equal_range("X-Forwarded-For");
  for (auto it = first; it != last; ++it) {
    if (n == kMaxLines) {
      return peer;  // more lines than any proxy chain adds: trust none of them
    }
    lines[n++] = std::string_view(it->value());
  }
  ip::address client = peer;
  while (n > 0) {
    std::string_view xff = lines[--n];
    while (!xff.empty()) {
      auto comma = xff.rfind(',');
      std::string_view item = comma == std::string_view::npos ? xff : xff.substr(comma + 1);
      xff = comma == std::string_view::npos ? std::string_view() : xff.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
        item.remove_prefix(1);
      }
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
        item.remove_suffix(1);
      }
      boost::system::error_code ec;
      auto a = ip::make_address(item, ec);
      if (ec) {
        return client;  // a garbled entry: trust nothing to its left
      }
      client = a;
      if (!proxies.contains(a)) {
        return client;
      }
    }
  }
  return client;
}

std::string_view referer_host(std::string_view referer, char* buf, std::size_t cap) noexcept {
  auto scheme = referer.find("://");
  if (scheme == std::string_view::npos) {
    return {};
  }
  std::string_view rest = referer.substr(scheme + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    rest = rest.substr(at + 1);
  }
  if (!rest.empty() && rest.front() != '[') {
    rest = rest.substr(0, rest.find(':'));
  }
  std::size_t n = 0;
  for (char c : rest) {
    unsigned char u = static_cast<unsigned char>(c);
    if (n == cap || u <= 0x20 || u >= 0x7f || c == ',') {
      return {};
    }
    buf[n++] = static_cast<char>(std::tolower(u));
  }
  return {buf, n};
}

RedirectPlan plan_redirect(const RedirectEnv& env,
                           const links::Snapshot& snapshot,
                           const RedirectInput& in,
                           RedirectScratch& scratch,
                           bool with_click) {
  RedirectPlan plan;
  std::string_view target = in.request.target();
  std::string_view query;
  if (auto q = target.find('?'); q != std::string_view::npos) {
    query = target.substr(q + 1);
    target = target.substr(0, q);
  }
  std::string_view rest = target.substr(3);  // after "/r/"
  std::string_view code = rest.substr(0, rest.find('/'));
  std::string_view deep = code.size() < rest.size() ? rest.substr(code.size() + 1) : "";

  const links::LinkView* link = links::is_valid_code(code) ? snapshot.find(code) : nullptr;
  if (link == nullptr) {
    plan.reply = not_found_or_fallback(env.services.config.redirect.unknown_code_fallback);
    return plan;
  }
  if (link->disabled) {
    plan.reply = not_found_or_fallback(link->program->fallback_url.empty()
                                           ? env.services.config.redirect.unknown_code_fallback
                                           : link->program->fallback_url);
    return plan;
  }
  const links::ProgramView& program = *link->program;

  // The click: classification, visitor, id.
  ClickRecord& c = plan.click.record;
  c.ts_ms = in.now_ms;
  c.reason = classify(env, in.request);
  c.visitor_hash = visitor_hash(env, in.request, in.peer);
  auto shard = static_cast<std::uint8_t>(c.visitor_hash % env.services.config.clicks.shard_count);
  c.id = make_click_id(in.now_ms, shard);
  c.program = program.id;
  c.referrer_id = link->referrer_id;
  c.code = link->code;
  char host_buf[255];
  c.referer_host =
      referer_host(header(in.request, bhttp::field::referer), host_buf, sizeof(host_buf));
  plan.click.dedupe_ms = program.dedupe_ms;
  plan.kind = RedirectPlan::Kind::kClick;

  // The 302.
  char id_text[kClickIdTextLength];
  c.id.to_text(id_text);
  std::string_view cid(id_text, with_click ? kClickIdTextLength : 0);
  scratch.location.clear();
  links::build_location(link->effective_destination(),
                        {.incoming_query = query,
                         .deep_path = program.deep_links ? deep : std::string_view(),
                         .ref_param = program.ref_param,
                         .ref_value = link->code,
                         .click_param = program.click_param,
                         .click_value = cid},
                        scratch.location);
  std::string& out = scratch.response;
  out.clear();
  out += "HTTP/1.1 302 Found\r\nLocation: ";
  out += scratch.location;
  if (with_click) {
    out += "\r\nSet-Cookie: earnd_cid=";
    out += cid;
    out += "; Max-Age=";
    append_u64(program.cookie_max_age_s, out);
    out += "; Path=/; HttpOnly; SameSite=Lax";
    if (env.services.config.redirect.cookie_secure) {
      out += "; Secure";
    }
  }
  out += "\r\nCache-Control: no-store\r\nContent-Length: 0\r\n";
  return plan;
}

void format_reply(const Reply& r, bool head_only, bool keep_alive, bool http10, std::string& out) {
  out += "HTTP/1.1 ";
  append_u64(r.status, out);
  out += ' ';
  out += reason_phrase(r.status);
  out += "\r\nContent-Type: ";
  out += r.content_type;
  out += "\r\nX-Content-Type-Options: nosniff\r\n";
  for (const auto& [name, value] : r.headers) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  out += "Content-Length: ";
  append_u64(r.body.size(), out);
  out += "\r\n";
  if (!keep_alive) {
    append_close_header(out);
  } else if (http10) {
    append_keep_alive_header(out);
  }
  out += "\r\n";
  if (!head_only) {
    out += r.body;
  }
}

}  // namespace earnd::http
