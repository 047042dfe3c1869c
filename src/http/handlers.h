#pragma once

// Request handling behind the sessions: the admin API and the public non-redirect routes. The
// redirect itself lives in the session, since it is the hot path and may wait for a commit.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "earnd/http/server.h"

namespace earnd::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;

// A response before serialization. Handlers fill it; the session writes it.
struct Reply {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// {"error": {"code": ..., "message": ...}} with the status.
Reply json_error(unsigned status, std::string_view code, std::string_view message);

// The credentials of an Authorization value using the Bearer scheme, whose name matches in any
// case (RFC 9110, section 11.1); empty for another scheme or a missing token.
std::string_view bearer_token(std::string_view authorization) noexcept;

// Admin listener: checks the admin key, then routes. Runs on the admin thread; may block on
// synced storage writes.
class ConversionQueue;
Reply handle_admin(Services& s, ConversionQueue& serial, const Request& req);

// Public listener routes other than /r/: health, readiness, and 404s.
Reply handle_public(Services& s, const Request& req);

// The merchant-site script served at /v1/earnd.js.
std::string_view earnd_js() noexcept;

// The reason phrase for a status code ("Found" for 302).
std::string_view reason_phrase(unsigned status) noexcept;

}  // namespace earnd::http
