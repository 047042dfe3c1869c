#pragma once

// Sign-in for the web pages: one-time portal links, portal sessions bound to one referrer,
// staff sessions on /admin/, and the cookie, origin and header rules they share. Tokens are
// random; only their SHA-256 is stored (docs family), so a copy of the data directory signs
// nobody in. Everything here may block on a synced storage write.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "handlers.h"

namespace earnd::http::web {

enum class SessionKind { kPortal, kAdmin };

// A signed-in browser. For a portal session referrer_id names the referrer it may read.
struct Session {
  std::string token;  // the cookie value; only its digest is stored
  std::string referrer_id;
  std::string csrf;  // sent back in X-CSRF-Token on cookie-authenticated writes
  std::uint64_t expires_ms = 0;
};

enum class LinkState { kValid, kUnknown, kExpired, kUsed };

inline constexpr std::string_view kPortalCookie = "earnd_portal";
inline constexpr std::string_view kAdminCookie = "earnd_admin";

// Stores a one-time sign-in token for a referrer's portal, valid until expires_ms. Returns
// the token, or nullopt when the store refused the write.
std::optional<std::string> create_portal_link(Services& s,
                                              std::string_view referrer_id,
                                              std::uint64_t expires_ms);

// What a sign-in token is now, without using it (the GET of a link, which mail scanners open).
LinkState peek_portal_link(Services& s, std::string_view token, std::uint64_t now_ms);

// Uses a valid token once and opens a portal session for its referrer, in one synced write.
// Serialized process-wide, so two POSTs of one token open at most one session. Returns the
// session, or the token's state when it is not valid (kValid with no session: storage failed).
struct ConsumeResult {
  LinkState state = LinkState::kUnknown;
  std::optional<Session> session;
};

ConsumeResult consume_portal_link(Services& s, std::string_view token, std::uint64_t now_ms);

// Opens a staff session (after the admin key was checked).
std::optional<Session> create_admin_session(Services& s, std::uint64_t now_ms);

// The live session named by the request's cookie of that kind, or nullopt.
std::optional<Session> find_session(Services& s,
                                    SessionKind kind,
                                    const Request& req,
                                    std::uint64_t now_ms);

// Removes a session (sign-out).
void end_session(Services& s, SessionKind kind, std::string_view token);

// The value of cookie name in the request, or "".
std::string cookie_value(const Request& req, std::string_view name);

// A Set-Cookie value: HttpOnly, SameSite=Strict, Path=path, Max-Age=max_age_s (0 deletes).
std::string session_cookie(Services& s,
                           std::string_view name,
                           std::string_view value,
                           std::string_view path,
                           std::uint64_t max_age_s);

// True when the request's Origin (or, without one, its Referer) names the host it was sent to.
// A request with neither is refused: every browser sends Origin on a POST.
bool same_origin(const Request& req);

// True when a cookie-authenticated write carries the session's CSRF token and comes from the
// same origin.
bool csrf_ok(const Request& req, const Session& session);

// The security headers of every page, asset and API answer of the web pages: CSP with
// default-src 'self' and frame-ancestors 'none', nosniff, a Referer of the origin alone (no
// path, so no token), no framing.
void add_security_headers(Reply& r);

// Decodes one field of an application/x-www-form-urlencoded body ("" when absent).
std::string form_field(std::string_view body, std::string_view name);

// Escapes text for HTML element content and attribute values.
std::string html_escape(std::string_view text);

}  // namespace earnd::http::web
