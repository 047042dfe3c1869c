// The admin dashboard's routes: its files and staff sign-in under /admin/, and the list
// endpoints the pages (and scripts) read: programs, referrers with their figures, conversions
// and payouts, each paged on the server.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>

#include <boost/json.hpp>

#include "earnd/common/secrets.h"
#include "earnd/common/time.h"
#include "earnd/links/catalog.h"
#include "earnd/reports/reports.h"
#include "earnd/rewards/ledger.h"
#include "earnd/store/store.h"
#include "web_assets.h"
#include "web_auth.h"
#include "web_routes.h"

namespace json = boost::json;
namespace beast_http = boost::beast::http;

namespace earnd::http::web {
namespace {

Reply secured(Reply r) {
  add_security_headers(r);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

Reply json_reply(unsigned status, const json::value& body) {
  return secured({status, "application/json", json::serialize(body), {}});
}

Reply error(unsigned status, std::string_view code, std::string_view message) {
  return secured(json_error(status, code, message));
}

Reply see_other(std::string location) {
  Reply r{303, "text/plain; charset=utf-8", "", {}};
  r.headers.emplace_back("Location", std::move(location));
  return secured(std::move(r));
}

Reply html_page(unsigned status, std::string_view title, std::string_view body_html) {
  std::string page =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<title>";
  page += html_escape(title);
  page +=
      "</title><link rel=\"stylesheet\" href=\"/admin/lib/style.css\"></head>"
      "<body><main class=\"narrow\">";
  page += body_html;
  page += "</main></body></html>\n";
  return secured({status, "text/html; charset=utf-8", std::move(page), {}});
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

Reply admin_session_route(Services& s, const Request& req) {
  std::uint64_t now = now_ms();
  if (req.method() == beast_http::verb::get) {
    auto session = find_session(s, SessionKind::kAdmin, req, now);
    if (!session) {
      return error(401, "unauthorized", "not signed in");
    }
    return json_reply(200, json::object{{"csrf", session->csrf},
                                        {"expires_at", format_rfc3339(session->expires_ms)}});
  }
  if (req.method() != beast_http::verb::post) {
    return error(405, "method_not_allowed", "GET or POST");
  }
  // Sign-in: a form POST from the dashboard itself (login CSRF is refused by the origin check).
  if (!same_origin(req)) {
    return error(403, "cross_origin", "sign in from the dashboard's own page");
  }
  std::string key = form_field(req.body(), "key");
  if (key.empty() || !constant_time_equal(key, s.config.server.admin_key)) {
    return html_page(401, "Sign-in failed",
                     "<h1>Sign-in failed</h1><p>That admin key was not accepted.</p>"
                     "<p><a href=\"/admin/\">Try again</a></p>");
  }
  auto session = create_admin_session(s, now);
  if (!session) {
    return error(503, "storage", "the session could not be stored");
  }
  Reply r = see_other("/admin/");
  r.headers.emplace_back("Set-Cookie", session_cookie(s, kAdminCookie, session->token, "/",
                                                      s.config.web.admin_session_ttl_s));
  return r;
}

Reply admin_signout(Services& s, const Request& req) {
  auto session = find_session(s, SessionKind::kAdmin, req, now_ms());
  if (!session || req.method() != beast_http::verb::post || !csrf_ok(req, *session)) {
    return error(403, "forbidden", "sign out with the dashboard's own button");
  }
  end_session(s, SessionKind::kAdmin, session->token);
  Reply r = json_reply(200, json::object{{"signed_out", true}});
  r.headers.emplace_back("Set-Cookie", session_cookie(s, kAdminCookie, "", "/", 0));
  return r;
}

// The program a list is about: the one named, or the only one there is.
std::optional<std::string> program_of(Services& s, const boost::urls::url_view& u, Reply& err) {
  std::string program = query_param(u, "program");
  auto snap = s.catalog.snapshot();
  if (program.empty() && snap->programs.size() == 1) {
    program = snap->programs.begin()->first;
  }
  if (program.empty()) {
    err = error(400, "missing_field", "program is required");
    return std::nullopt;
  }
  if (snap->program(program) == nullptr) {
    err = error(404, "not_found", "no such program");
    return std::nullopt;
  }
  return program;
}

Reply list_programs(Services& s) {
  auto snap = s.catalog.snapshot();
  std::vector<std::string> ids;
  for (const auto& [id, p] : snap->programs) {
    ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  json::array out;
  for (const auto& id : ids) {
    auto r = s.catalog.get_program(id);
    if (r.status == 200) {
      out.push_back(std::move(r.body));
    }
  }
  return json_reply(200, json::object{{"programs", std::move(out)}});
}

bool matches(const json::object& row, const std::string& needle) {
  if (needle.empty()) {
    return true;
  }
  for (const char* k : {"name", "external_id", "code", "referrer_id"}) {
    const json::value* v = row.if_contains(k);
    if (v != nullptr && v->is_string() &&
        lower(v->get_string()).find(needle) != std::string::npos) {
      return true;
    }
  }
  return false;
}

constexpr const char* kTextSorts[] = {"name", "code", "external_id", "referrer_id"};
constexpr const char* kNumberSorts[] = {"clicks",        "unique_clicks",  "bot_clicks",
                                        "signups",       "sales",          "revenue_minor",
                                        "rewards_minor", "conversion_rate"};

double number(const json::object& row, std::string_view key) {
  const json::value* v = row.if_contains(key);
  return v != nullptr && v->is_number() ? v->to_number<double>() : 0.0;
}

std::string text(const json::object& row, std::string_view key) {
  const json::value* v = row.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

// Sorts rows by a column ("-clicks": descending); false for an unknown column.
bool sort_rows(json::array& rows, std::string sort) {
  bool desc = sort.starts_with("-");
  std::string key = desc ? sort.substr(1) : sort;
  bool is_text = std::find_if(std::begin(kTextSorts), std::end(kTextSorts),
                              [&](const char* k) { return key == k; }) != std::end(kTextSorts);
  bool is_number = std::find_if(std::begin(kNumberSorts), std::end(kNumberSorts),
                                [&](const char* k) { return key == k; }) != std::end(kNumberSorts);
  if (!is_text && !is_number) {
    return false;
  }
  std::stable_sort(rows.begin(), rows.end(), [&](const json::value& a, const json::value& b) {
    const auto& x = a.as_object();
    const auto& y = b.as_object();
    int c = 0;
    if (is_text) {
      std::string l = lower(text(x, key)), r = lower(text(y, key));
      c = l < r ? -1 : l > r ? 1 : 0;
    } else {
      double l = number(x, key), r = number(y, key);
      c = l < r ? -1 : l > r ? 1 : 0;
    }
    if (c == 0) {
      return text(x, "referrer_id") < text(y, "referrer_id");
    }
    return desc ? c > 0 : c < 0;
  });
  return true;
}

std::string referrers_csv(const json::array& rows) {
  std::string out = "referrer_id,external_id,name,code";
  for (const char* c : kNumberSorts) {
    out += ",";
    out += c;
  }
  out += "\n";
  for (const auto& v : rows) {
    const auto& row = v.as_object();
    for (const char* c : {"referrer_id", "external_id", "name", "code"}) {
      out += reports::csv_cell(text(row, c)) + ",";
    }
    for (const char* c : kNumberSorts) {
      const json::value& n = row.at(c);
      if (n.is_double()) {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.4f", n.get_double());
        out += buf;
      } else {
        out += json::serialize(n);
      }
      out += c == kNumberSorts[std::size(kNumberSorts) - 1] ? "\n" : ",";
    }
  }
  return out;
}

// GET /v1/referrers: every referrer of the program with its figures over the range (the
// referrers report), searched, sorted and then paged, so the page is the same whatever the
// page size before it.
Reply list_referrers(Services& s, const boost::urls::url_view& u) {
  Reply err;
  auto program = program_of(s, u, err);
  if (!program) {
    return err;
  }
  reports::ReportQuery q{
      .program = *program, .from = query_param(u, "from"), .to = query_param(u, "to")};
  if (auto tz = query_param(u, "tz"); !tz.empty()) {
    q.tz = tz;
  }
  auto report = reports::referrers_report(s.store, s.catalog, q);
  if (report.status != 200) {
    return secured({report.status, report.content_type, std::move(report.body), {}});
  }
  json::object body = json::parse(report.body).as_object();
  json::array all = std::move(body["rows"].as_array());

  std::string needle = lower(query_param(u, "q"));
  json::array rows;
  for (auto& r : all) {
    if (matches(r.as_object(), needle)) {
      rows.push_back(std::move(r));
    }
  }
  std::string sort = query_param(u, "sort");
  if (!sort_rows(rows, sort.empty() ? "name" : sort)) {
    return error(400, "invalid_sort", "sort must be a column such as name, code or -clicks");
  }
  if (query_param(u, "format") == "csv") {
    Reply r{200, "text/csv; charset=utf-8", referrers_csv(rows), {}};
    r.headers.emplace_back("Content-Disposition",
                           "attachment; filename=\"referrers-" + *program + ".csv\"");
    return secured(std::move(r));
  }
  auto paging = paging_of(s, u, err);
  if (!paging) {
    return err;
  }
  json::object out = page_of(std::move(rows), *paging);
  for (const char* k : {"program", "from", "to", "tz"}) {
    out[k] = body[k];
  }
  out["sort"] = sort.empty() ? "name" : sort;
  return json_reply(200, out);
}

std::optional<std::uint64_t> boundary(const boost::urls::url_view& u,
                                      const char* name,
                                      bool is_to,
                                      Reply& err) {
  std::string t = query_param(u, name);
  if (t.empty()) {
    return is_to ? UINT64_MAX : 0;
  }
  std::string tz = query_param(u, "tz");
  auto ms = reports::parse_boundary(t, tz.empty() ? "UTC" : tz, is_to);
  if (!ms) {
    err = error(400, "invalid_time",
                "from and to must be dates (2026-12-01) or RFC 3339 times, "
                "and tz an IANA time zone");
  }
  return ms;
}

Reply conversions_route(Services& s, const boost::urls::url_view& u) {
  Reply err;
  ConversionFilter f{.program = query_param(u, "program"),
                     .type = query_param(u, "type"),
                     .attributed = query_param(u, "attributed"),
                     .referrer_id = query_param(u, "referrer_id")};
  auto from = boundary(u, "from", false, err);
  auto to = boundary(u, "to", true, err);
  if (!from || !to) {
    return err;
  }
  f.from_ms = *from;
  f.to_ms = *to;
  if (!f.attributed.empty() && f.attributed != "true" && f.attributed != "false") {
    return error(400, "invalid_field", "attributed must be true or false");
  }
  if (!is_conversion_type_filter(f.type)) {
    return error(400, "invalid_field", "type must be signup, sale or refund");
  }
  auto p = paging_of(s, u, err);
  if (!p) {
    return err;
  }
  return json_reply(200, list_conversions(s, f, p->page, p->per_page));
}

Reply payouts_route(Services& s, const boost::urls::url_view& u) {
  Reply err;
  auto paging = paging_of(s, u, err);
  if (!paging) {
    return err;
  }
  json::object all = s.ledger.list_payouts(query_param(u, "program"), query_param(u, "status"));
  std::string referrer = query_param(u, "referrer_id");
  json::array rows;
  for (auto& p : all["payouts"].as_array()) {
    if (referrer.empty() || text(p.as_object(), "referrer_id") == referrer) {
      rows.push_back(std::move(p));
    }
  }
  // Newest first, as a payout screen reads.
  std::reverse(rows.begin(), rows.end());
  json::object out = page_of(std::move(rows), *paging);
  out["payouts"] = out["rows"];  // the field name GET /v1/payouts has always had
  return json_reply(200, out);
}

Reply portal_link_route(Services& s, std::string_view referrer_id) {
  auto info = s.catalog.referrer(referrer_id);
  if (!info) {
    return error(404, "not_found", "no such referrer");
  }
  std::uint64_t expires = now_ms() + std::uint64_t{s.config.web.portal_link_ttl_s} * 1000;
  auto token = create_portal_link(s, referrer_id, expires);
  if (!token) {
    return error(503, "storage", "the link could not be stored");
  }
  return json_reply(201,
                    json::object{{"url", s.catalog.public_base_url() + "/portal/signin/" + *token},
                                 {"expires_at", format_rfc3339(expires)},
                                 {"referrer_id", referrer_id}});
}

}  // namespace

std::string query_param(const boost::urls::url_view& u, std::string_view name) {
  auto params = u.params();
  auto it = params.find(name);
  return it == params.end() ? std::string() : std::string((*it).value);
}

std::optional<Paging> read_paging(const boost::urls::url_view& u,
                                  std::size_t default_per,
                                  std::size_t max_per,
                                  Reply& err) {
  // A whole number from 1 up, or nullopt; absent or empty gives fallback.
  auto number = [&](std::string_view name, std::size_t fallback) -> std::optional<std::size_t> {
    std::string t = query_param(u, name);
    if (t.empty()) {
      return fallback;
    }
    std::size_t n = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
    if (ec != std::errc() || end != t.data() + t.size() || n == 0) {
      return std::nullopt;
    }
    return n;
  };
  auto page = number("page", 1);
  if (!page) {
    err = json_error(400, "invalid_page", "page must be a whole number from 1 up");
    return std::nullopt;
  }
  auto per = number("per_page", default_per);
  if (!per) {
    err = json_error(400, "invalid_per_page", "per_page must be a whole number from 1 up");
    return std::nullopt;
  }
  return Paging{*page, std::min(*per, max_per)};
}

std::optional<Paging> paging_of(Services& s, const boost::urls::url_view& u, Reply& err) {
  auto p = read_paging(u, s.config.web.default_per_page, s.config.web.max_per_page, err);
  if (!p) {
    err = secured(std::move(err));
  }
  return p;
}

json::object page_of(json::array rows, const Paging& p) {
  std::size_t total = rows.size();
  // A page far past the end must not wrap the multiplication around to an earlier page.
  std::size_t first =
      p.page - 1 > total / p.per_page ? total : std::min(total, (p.page - 1) * p.per_page);
  std::size_t last = std::min(total, first + p.per_page);
  json::array out;
  out.reserve(last - first);
  for (std::size_t i = first; i < last; ++i) {
    out.push_back(std::move(rows[i]));
  }
  return json::object{
      {"rows", std::move(out)}, {"total", total}, {"page", p.page}, {"per_page", p.per_page}};
}

std::string mask_customer(std::string_view id) {
  if (id.size() < 6) {
    return id.empty() ? "" : "***";
  }
  return std::string(id.substr(0, 2)) + "***" + std::string(id.substr(id.size() - 2));
}

// LIMIT: conversions are keyed by (program, event id), so a list reads every conversion of the
// program and sorts them in memory. Fine for tens of thousands; a (program, time) index would
// make pages cost what they show.
json::object list_conversions(Services& s,
                              const ConversionFilter& f,
                              std::size_t page,
                              std::size_t per_page) {
  std::string prefix = "e/" + f.program;
  if (!f.program.empty()) {
    prefix.push_back('\0');
  }
  std::vector<std::pair<std::uint64_t, json::object>> found;
  s.store.scan_docs(prefix, [&](std::string_view, std::string_view value) {
    ErrorCode ec;
    json::value v = json::parse(value, ec);
    if (ec || !v.is_object()) {
      return true;
    }
    json::object& d = v.as_object();
    std::uint64_t at = parse_rfc3339_ms(text(d, "occurred_at")).value_or(0);
    bool attributed =
        d.contains("attributed") && d["attributed"].is_bool() && d["attributed"].get_bool();
    if ((!f.type.empty() && text(d, "type") != f.type) ||
        (!f.attributed.empty() && (f.attributed == "true") != attributed) ||
        (!f.referrer_id.empty() && text(d, "referrer_id") != f.referrer_id) || at < f.from_ms ||
        at >= f.to_ms) {
      return true;
    }
    json::object row;
    for (const char* k : {"event_id", "program", "type", "attributed", "referrer_id", "link_code",
                          "click_id", "match", "self_referral", "customer_id", "amount_minor",
                          "currency", "occurred_at", "refund_of", "refunded_minor"}) {
      if (auto it = d.find(k); it != d.end()) {
        row[k] = it->value();
      }
    }
    std::int64_t reward = 0;
    if (auto it = d.find("rewards"); it != d.end() && it->value().is_array()) {
      for (const auto& e : it->value().as_array()) {
        if (e.is_object() && text(e.as_object(), "kind") != "referee") {
          reward += static_cast<std::int64_t>(number(e.as_object(), "amount_minor"));
        }
      }
    }
    row["reward_minor"] = reward;
    if (f.mask_customers) {
      row["customer_id"] = mask_customer(text(d, "customer_id"));
      row.erase("click_id");
      row.erase("match");
    }
    found.emplace_back(at, std::move(row));
    return true;
  });
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    if (a.first != b.first) {
      return a.first > b.first;
    }
    return text(a.second, "event_id") < text(b.second, "event_id");
  });
  json::array rows;
  for (auto& [at, row] : found) {
    rows.push_back(std::move(row));
  }
  return page_of(std::move(rows), Paging{page, per_page});
}

std::optional<Reply> handle_admin_pages(Services& s, const Request& req, std::string_view path) {
  if (path == "/admin") {
    Reply r = see_other("/admin/");
    r.status = 301;
    return r;
  }
  if (!path.starts_with("/admin/")) {
    return std::nullopt;
  }
  if (path == "/admin/session") {
    return admin_session_route(s, req);
  }
  if (path == "/admin/session/end") {
    return admin_signout(s, req);
  }
  if (req.method() != beast_http::verb::get && req.method() != beast_http::verb::head) {
    return error(405, "method_not_allowed", "the dashboard's files are read with GET");
  }
  std::string_view rest = path.substr(7);
  std::optional<Reply> r;
  if (rest.empty()) {
    r = asset_reply("admin/index.html");
  } else if (rest.starts_with("lib/")) {
    r = asset_reply("common/" + std::string(rest.substr(4)));
  } else if (rest.starts_with("vendor/")) {
    r = asset_reply("vendor/" + std::string(rest.substr(7)));
  } else {
    r = asset_reply("admin/" + std::string(rest));
  }
  return r ? std::move(*r) : error(404, "not_found", "no such file");
}

CookieAuth admin_cookie_auth(Services& s, const Request& req) {
  auto session = find_session(s, SessionKind::kAdmin, req, now_ms());
  if (!session) {
    return CookieAuth::kNone;
  }
  bool read = req.method() == beast_http::verb::get || req.method() == beast_http::verb::head;
  return read || csrf_ok(req, *session) ? CookieAuth::kOk : CookieAuth::kForbidden;
}

std::optional<Reply> route_admin_lists(Services& s,
                                       const Request& req,
                                       const boost::urls::url_view& u) {
  std::vector<std::string> seg;
  for (auto p : u.segments()) {
    seg.push_back(p);
  }
  bool get = req.method() == beast_http::verb::get;
  if (seg.size() == 2 && seg[0] == "v1" && get) {
    if (seg[1] == "programs") {
      return list_programs(s);
    }
    if (seg[1] == "referrers") {
      return list_referrers(s, u);
    }
    if (seg[1] == "conversions") {
      return conversions_route(s, u);
    }
    if (seg[1] == "payouts") {
      return payouts_route(s, u);
    }
  }
  if (seg.size() == 4 && seg[0] == "v1" && seg[1] == "referrers" && seg[3] == "portal-link" &&
      req.method() == beast_http::verb::post) {
    return portal_link_route(s, seg[2]);
  }
  return std::nullopt;
}

}  // namespace earnd::http::web
