#pragma once

// The web pages' routes: /admin/ (pages and staff sign-in) and the admin list endpoints on the
// admin listener, /portal/ (pages, sign-in and the referrer's own API) on the public listener.
// Every answer carries the pages' security headers.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/object.hpp>
#include <boost/url/url_view.hpp>

#include "handlers.h"

namespace earnd::http::web {

// /admin and /admin/...: the dashboard's files, POST /admin/session (sign in with the admin
// key), GET /admin/session (the CSRF token of the signed-in staff member) and POST
// /admin/session/end. nullopt for any other path. Needs no Authorization: the files hold no
// data, and the session routes check the key or the cookie themselves.
std::optional<Reply> handle_admin_pages(Services& s, const Request& req, std::string_view path);

// How an admin API request without a valid Bearer key stands with a staff cookie.
enum class CookieAuth { kNone, kOk, kForbidden };

// kOk for a live staff session (writes must also carry its CSRF token from the same origin),
// kForbidden for a live session whose write fails that check, kNone otherwise.
CookieAuth admin_cookie_auth(Services& s, const Request& req);

// GET /v1/programs, GET /v1/referrers, GET /v1/conversions, GET /v1/payouts (paged) and POST
// /v1/referrers/{id}/portal-link; nullopt for other routes. The caller has authorized the
// request.
std::optional<Reply> route_admin_lists(Services& s,
                                       const Request& req,
                                       const boost::urls::url_view& u);

// True for /portal and everything under it.
bool is_portal_path(std::string_view path) noexcept;

// Everything under /portal on the public listener.
Reply handle_portal(Services& s, const Request& req);

// Filters of a conversions list; the portal fixes referrer_id and masks customer ids.
struct ConversionFilter {
  std::string program;
  std::string type;
  std::string attributed;  // "", "true" or "false"
  std::string referrer_id;
  std::uint64_t from_ms = 0;
  std::uint64_t to_ms = UINT64_MAX;
  bool mask_customers = false;
};

// True for a conversions list's type filter: empty (any), signup, sale or refund. Anything else
// is answered 400 invalid_field rather than as an empty list.
inline bool is_conversion_type_filter(std::string_view t) noexcept {
  return t.empty() || t == "signup" || t == "sale" || t == "refund";
}

// {"rows": [...], "total", "page", "per_page"}: conversions newest first. Reads every
// conversion of the program (see the LIMIT in the .cc).
boost::json::object list_conversions(Services& s,
                                     const ConversionFilter& f,
                                     std::size_t page,
                                     std::size_t per_page);

// page and per_page from the query. Absent (or empty) they are 1 and default_per; a per_page
// above max_per is clamped to it. Anything else that is not a whole number from 1 up (zero,
// negative, not digits, too large) fills err with 400 invalid_page or invalid_per_page and
// returns nullopt.
struct Paging {
  std::size_t page = 1;
  std::size_t per_page = 50;
};

std::optional<Paging> read_paging(const boost::urls::url_view& u,
                                  std::size_t default_per,
                                  std::size_t max_per,
                                  Reply& err);
// read_paging with the [web] limits; err carries the web pages' security headers.
std::optional<Paging> paging_of(Services& s, const boost::urls::url_view& u, Reply& err);

// The value of a query parameter, or "".
std::string query_param(const boost::urls::url_view& u, std::string_view name);

// A customer id with its middle hidden: "cu***42"; "***" for short ids.
std::string mask_customer(std::string_view id);

// Copies the rows [first, first + per_page) of rows into {"rows", "total", "page", "per_page"}.
boost::json::object page_of(boost::json::array rows, const Paging& p);

}  // namespace earnd::http::web
