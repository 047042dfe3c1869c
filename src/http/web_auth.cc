#include "web_auth.h"

#include <mutex>

#include <boost/json.hpp>

#include "earnd/common/secrets.h"
#include "earnd/config/config.h"
#include "earnd/log/log.h"
#include "earnd/store/store.h"

namespace json = boost::json;
namespace beast_http = boost::beast::http;

namespace earnd::http::web {
namespace {

// 43 characters of [a-z0-9]: about 222 random bits.
constexpr std::size_t kTokenChars = 43;

std::string link_key(std::string_view token) {
  return "wl/" + sha256_hex(token);
}

std::string session_key(SessionKind kind, std::string_view token) {
  return (kind == SessionKind::kPortal ? "wp/" : "wa/") + sha256_hex(token);
}

std::optional<json::object> read_doc(Services& s, const std::string& key) {
  auto r = s.store.get_doc(key);
  if (!r || !*r) {
    return std::nullopt;
  }
  ErrorCode ec;
  json::value v = json::parse(**r, ec);
  if (ec || !v.is_object()) {
    return std::nullopt;
  }
  return v.as_object();
}

std::uint64_t u64(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_int64()    ? static_cast<std::uint64_t>(v->get_int64())
         : v != nullptr && v->is_uint64() ? v->get_uint64()
                                          : 0;
}

std::string text(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

LinkState state_of(const std::optional<json::object>& doc, std::uint64_t now_ms) {
  if (!doc) {
    return LinkState::kUnknown;
  }
  if (u64(*doc, "used_ms") != 0) {
    return LinkState::kUsed;
  }
  return now_ms >= u64(*doc, "expires_ms") ? LinkState::kExpired : LinkState::kValid;
}

Session new_session(std::string referrer_id, std::uint64_t expires_ms) {
  return {.token = random_token("", kTokenChars),
          .referrer_id = std::move(referrer_id),
          .csrf = random_token("", kTokenChars),
          .expires_ms = expires_ms};
}

std::string session_doc(const Session& session) {
  return json::serialize(json::object{{"referrer_id", session.referrer_id},
                                      {"csrf", session.csrf},
                                      {"expires_ms", session.expires_ms}});
}

bool sync_writes(Services& s) {
  return s.config.storage.durability == config::Durability::kGroup;
}

// The host[:port] of an absolute URL, or "".
std::string_view authority_of(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) {
    return {};
  }
  url.remove_prefix(scheme + 3);
  return url.substr(0, url.find_first_of("/?#"));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

std::string form_decode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 &&
               hex_value(in[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> create_portal_link(Services& s,
                                              std::string_view referrer_id,
                                              std::uint64_t expires_ms) {
  std::string token = random_token("", kTokenChars);
  store::Store::DocBatch batch;
  batch.puts.emplace_back(
      link_key(token),
      json::serialize(
          json::object{{"referrer_id", referrer_id}, {"expires_ms", expires_ms}, {"used_ms", 0}}));
  if (s.store.write(batch, sync_writes(s))) {
    return std::nullopt;
  }
  return token;
}

LinkState peek_portal_link(Services& s, std::string_view token, std::uint64_t now_ms) {
  if (token.empty() || token.size() > 128) {
    return LinkState::kUnknown;
  }
  return state_of(read_doc(s, link_key(token)), now_ms);
}

ConsumeResult consume_portal_link(Services& s, std::string_view token, std::uint64_t now_ms) {
  if (token.empty() || token.size() > 128) {
    return {};
  }
  // One lock for the whole process: portal sign-ins are rare, and it makes read-check-write
  // of a token atomic across the I/O threads.
  static std::mutex consume_mutex;
  std::lock_guard lock(consume_mutex);

  std::string key = link_key(token);
  auto doc = read_doc(s, key);
  LinkState state = state_of(doc, now_ms);
  if (state != LinkState::kValid) {
    return {state, std::nullopt};
  }

  // Mark the link used and open the session in one write: either both happen or neither.
  (*doc)["used_ms"] = now_ms;
  Session session = new_session(text(*doc, "referrer_id"),
                                now_ms + std::uint64_t{s.config.web.portal_session_ttl_s} * 1000);
  store::Store::DocBatch batch;
  batch.puts.emplace_back(key, json::serialize(*doc));
  batch.puts.emplace_back(session_key(SessionKind::kPortal, session.token), session_doc(session));
  if (s.store.write(batch, sync_writes(s))) {
    log::get("http")->warn("event=portal_signin_write_failed");
    return {LinkState::kValid, std::nullopt};
  }
  return {LinkState::kValid, std::move(session)};
}

std::optional<Session> create_admin_session(Services& s, std::uint64_t now_ms) {
  Session session =
      new_session("", now_ms + std::uint64_t{s.config.web.admin_session_ttl_s} * 1000);
  store::Store::DocBatch batch;
  batch.puts.emplace_back(session_key(SessionKind::kAdmin, session.token), session_doc(session));
  if (s.store.write(batch, sync_writes(s))) {
    return std::nullopt;
  }
  return session;
}

std::optional<Session> find_session(Services& s,
                                    SessionKind kind,
                                    const Request& req,
                                    std::uint64_t now_ms) {
  std::string token =
      cookie_value(req, kind == SessionKind::kPortal ? kPortalCookie : kAdminCookie);
  if (token.empty() || token.size() > 128) {
    return std::nullopt;
  }
  auto doc = read_doc(s, session_key(kind, token));
  if (!doc || now_ms >= u64(*doc, "expires_ms")) {
    return std::nullopt;
  }
  return Session{.token = std::move(token),
                 .referrer_id = text(*doc, "referrer_id"),
                 .csrf = text(*doc, "csrf"),
                 .expires_ms = u64(*doc, "expires_ms")};
}

void end_session(Services& s, SessionKind kind, std::string_view token) {
  store::Store::DocBatch batch;
  batch.deletes.push_back(session_key(kind, token));
  (void)s.store.write(batch, sync_writes(s));
}

std::string cookie_value(const Request& req, std::string_view name) {
  for (const auto& field : req.base()) {
    if (field.name() != beast_http::field::cookie) {
      continue;
    }
    std::string_view v = field.value();
    while (!v.empty()) {
      auto end = v.find(';');
      std::string_view pair = v.substr(0, end);
      while (!pair.empty() && pair.front() == ' ') {
        pair.remove_prefix(1);
      }
      if (pair.size() > name.size() && pair.starts_with(name) && pair[name.size()] == '=') {
        return std::string(pair.substr(name.size() + 1));
      }
      v = end == std::string_view::npos ? std::string_view() : v.substr(end + 1);
    }
  }
  return {};
}

std::string session_cookie(Services& s,
                           std::string_view name,
                           std::string_view value,
                           std::string_view path,
                           std::uint64_t max_age_s) {
  std::string c(name);
  c += "=";
  c += value;
  c += "; Max-Age=" + std::to_string(max_age_s) + "; Path=";
  c += path;
  c += "; HttpOnly; SameSite=Strict";
  if (s.config.web.cookie_secure) {
    c += "; Secure";
  }
  return c;
}

bool same_origin(const Request& req) {
  auto host = req.find(beast_http::field::host);
  if (host == req.end() || host->value().empty()) {
    return false;
  }
  auto origin = req.find(beast_http::field::origin);
  if (origin != req.end()) {
    return authority_of(origin->value()) == host->value();
  }
  auto referer = req.find(beast_http::field::referer);
  return referer != req.end() && authority_of(referer->value()) == host->value();
}

bool csrf_ok(const Request& req, const Session& session) {
  auto it = req.find("X-CSRF-Token");
  return it != req.end() && !session.csrf.empty() &&
         constant_time_equal(it->value(), session.csrf) && same_origin(req);
}

void add_security_headers(Reply& r) {
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'self'; script-src 'self'; style-src 'self'; "
                         "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                         "form-action 'self'; frame-ancestors 'none'");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  // strict-origin, not no-referrer: under no-referrer a browser sends "Origin: null" on the
  // pages' own form POSTs (staff sign-in, portal Continue), which same_origin() must refuse. A
  // Referer then carries the origin alone, never a path, so no sign-in token reaches it.
  r.headers.emplace_back("Referrer-Policy", "strict-origin");
  r.headers.emplace_back("Cross-Origin-Opener-Policy", "same-origin");
  r.headers.emplace_back("Cross-Origin-Resource-Policy", "same-origin");
}

std::string form_field(std::string_view body, std::string_view name) {
  while (!body.empty()) {
    auto end = body.find('&');
    std::string_view pair = body.substr(0, end);
    auto eq = pair.find('=');
    if (eq != std::string_view::npos && form_decode(pair.substr(0, eq)) == name) {
      return form_decode(pair.substr(eq + 1));
    }
    body = end == std::string_view::npos ? std::string_view() : body.substr(end + 1);
  }
  return {};
}

std::string html_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace earnd::http::web
