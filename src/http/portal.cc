// The referrer portal on the public listener: its files, the one-time sign-in (the link's GET
// only shows a Continue button; the POST behind it uses the token and sets the session
// cookie), and /portal/api/me/..., which reads only the signed-in referrer's own data.

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include "earnd/common/time.h"
#include "earnd/links/catalog.h"
#include "earnd/reports/reports.h"
#include "earnd/rewards/ledger.h"
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

Reply page(unsigned status, std::string_view title, std::string_view body_html) {
  std::string html =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>";
  html += html_escape(title);
  html +=
      "</title>\n<link rel=\"stylesheet\" href=\"/portal/lib/style.css\">\n</head>\n"
      "<body><main class=\"narrow\">\n";
  html += body_html;
  html += "\n</main></body></html>\n";
  return secured({status, "text/html; charset=utf-8", std::move(html), {}});
}

// What a used, expired or unknown link shows: why, and how to get a new one.
Reply link_failed(Services& s, const Request& req, LinkState state) {
  std::string why = state == LinkState::kUsed      ? "This sign-in link has already been used."
                    : state == LinkState::kExpired ? "This sign-in link has expired."
                                                   : "This sign-in link is not valid.";
  std::string minutes = std::to_string(s.config.web.portal_link_ttl_s / 60);
  std::string body = "<h1>Sign-in link not valid</h1>\n<p id=\"reason\">" + why + "</p>\n" +
                     "<p>Each link signs you in once, within " + minutes +
                     " minutes. Ask the program that invited you for a new sign-in link.</p>";
  if (find_session(s, SessionKind::kPortal, req, now_ms())) {
    body += "\n<p><a href=\"/portal/\">You are still signed in: open your portal</a></p>";
  }
  return page(state == LinkState::kUnknown ? 404 : 410, "Sign-in link not valid", body);
}

Reply signin_form(Services& s, const Request& req, std::string_view token) {
  LinkState state = peek_portal_link(s, token, now_ms());
  if (state != LinkState::kValid) {
    return link_failed(s, req, state);
  }
  std::string body =
      "<h1>Sign in to your referrer portal</h1>\n"
      "<p>Press Continue to sign in. The link works once.</p>\n"
      "<form method=\"post\" action=\"/portal/signin\">"
      "<input type=\"hidden\" name=\"token\" value=\"" +
      html_escape(token) + "\"><button type=\"submit\" id=\"continue\">Continue</button></form>";
  return page(200, "Sign in", body);
}

Reply signin(Services& s, const Request& req) {
  if (!same_origin(req)) {
    return page(403, "Sign-in refused",
                "<h1>Sign-in refused</h1><p>Open your sign-in link and press Continue.</p>");
  }
  auto result = consume_portal_link(s, form_field(req.body(), "token"), now_ms());
  if (result.state != LinkState::kValid) {
    return link_failed(s, req, result.state);
  }
  if (!result.session) {
    return error(503, "storage", "the session could not be stored");
  }
  // The token stays behind: the browser goes on to a URL without it.
  Reply r = see_other("/portal/");
  r.headers.emplace_back("Set-Cookie",
                         session_cookie(s, kPortalCookie, result.session->token, "/portal",
                                        s.config.web.portal_session_ttl_s));
  return r;
}

Reply signout(Services& s, const Request& req) {
  auto session = find_session(s, SessionKind::kPortal, req, now_ms());
  if (!same_origin(req)) {
    return error(403, "cross_origin", "sign out from the portal's own page");
  }
  if (session) {
    end_session(s, SessionKind::kPortal, session->token);
  }
  Reply r = see_other("/portal/");
  r.headers.emplace_back("Set-Cookie", session_cookie(s, kPortalCookie, "", "/portal", 0));
  return r;
}

reports::ReportQuery report_query(const links::ReferrerInfo& me, const boost::urls::url_view& u) {
  reports::ReportQuery q{.program = me.program,
                         .referrer = me.id,
                         .from = query_param(u, "from"),
                         .to = query_param(u, "to")};
  if (auto tz = query_param(u, "tz"); !tz.empty()) {
    q.tz = tz;
  }
  if (auto i = query_param(u, "interval"); !i.empty()) {
    q.interval = i;
  }
  return q;
}

Reply me(Services& s, const links::ReferrerInfo& info) {
  auto program = s.catalog.get_program(info.program);
  json::object p = program.status == 200 ? program.body.as_object() : json::object();
  json::array codes;
  for (const auto& c : info.codes) {
    codes.push_back(json::value(c));
  }
  return json_reply(200, json::object{{"referrer_id", info.id},
                                      {"name", info.name},
                                      {"external_id", info.external_id},
                                      {"program", info.program},
                                      {"program_name", p["name"]},
                                      {"currency", p["currency"]},
                                      {"hold_days", p["hold_days"]},
                                      {"payout_minimum_minor", p["payout_minimum_minor"]},
                                      {"codes", std::move(codes)}});
}

Reply summary(Services& s, const links::ReferrerInfo& info, const boost::urls::url_view& u) {
  auto r = reports::referrers_report(s.store, s.catalog, report_query(info, u));
  if (r.status != 200) {
    return secured({r.status, r.content_type, std::move(r.body), {}});
  }
  json::object body = json::parse(r.body).as_object();
  json::array& rows = body["rows"].as_array();
  json::object out{{"from", body["from"]}, {"to", body["to"]}, {"tz", body["tz"]}};
  if (!rows.empty()) {
    json::object& row = rows.front().as_object();
    row.erase("external_id");
    out["totals"] = std::move(row);
  }
  return json_reply(200, out);
}

Reply ledger(Services& s, const links::ReferrerInfo& info) {
  auto view = s.ledger.view(info.id);
  if (!view) {
    return error(404, "not_found", "no ledger");
  }
  // The referee entries are the merchant's gifts to customers, not the referrer's money.
  json::array mine;
  for (auto& e : (*view)["entries"].as_array()) {
    json::object& entry = e.as_object();
    if (entry["kind"] == "referee") {
      continue;
    }
    std::string customer = entry["customer_id"].is_string()
                               ? std::string(entry["customer_id"].get_string())
                               : std::string();
    entry["customer_id"] = mask_customer(customer);
    entry.erase("click_id");
    mine.push_back(std::move(entry));
  }
  (*view)["entries"] = std::move(mine);
  return json_reply(200, *view);
}

Reply payouts(Services& s, const links::ReferrerInfo& info, const boost::urls::url_view& u) {
  Reply err;
  auto paging = paging_of(s, u, err);
  if (!paging) {
    return err;
  }
  json::object all = s.ledger.list_payouts(info.program, "");
  json::array rows;
  for (auto& p : all["payouts"].as_array()) {
    json::object& payout = p.as_object();
    if (payout["referrer_id"] == json::value(info.id)) {
      payout.erase("entries");
      rows.push_back(std::move(p));
    }
  }
  std::reverse(rows.begin(), rows.end());
  return json_reply(200, page_of(std::move(rows), *paging));
}

Reply conversions(Services& s, const links::ReferrerInfo& info, const boost::urls::url_view& u) {
  ConversionFilter f{.program = info.program,
                     .type = query_param(u, "type"),
                     .referrer_id = info.id,
                     .mask_customers = true};
  if (!is_conversion_type_filter(f.type)) {
    return error(400, "invalid_field", "type must be signup, sale or refund");
  }
  std::string tz = query_param(u, "tz");
  for (auto [name, is_to] : {std::pair{"from", false}, std::pair{"to", true}}) {
    std::string t = query_param(u, name);
    if (t.empty()) {
      continue;
    }
    auto ms = reports::parse_boundary(t, tz.empty() ? "UTC" : tz, is_to);
    if (!ms) {
      return error(400, "invalid_time", "from and to must be dates or RFC 3339 times");
    }
    (is_to ? f.to_ms : f.from_ms) = *ms;
  }
  Reply err;
  auto p = paging_of(s, u, err);
  if (!p) {
    return err;
  }
  return json_reply(200, list_conversions(s, f, p->page, p->per_page));
}

// /portal/api/me[/...]: the session names the referrer; nothing here takes an id from the URL.
Reply api(Services& s, const Request& req, const boost::urls::url_view& u, std::string_view rest) {
  auto session = find_session(s, SessionKind::kPortal, req, now_ms());
  if (!session) {
    return error(401, "unauthorized", "sign in with your portal link");
  }
  if (req.method() != beast_http::verb::get && req.method() != beast_http::verb::head) {
    return error(405, "method_not_allowed", "the portal API is read-only");
  }
  auto info = s.catalog.referrer(session->referrer_id);
  if (!info) {
    return error(404, "not_found", "this referrer no longer exists");
  }
  if (rest == "me") {
    return me(s, *info);
  }
  if (rest == "me/links") {
    return json_reply(200, s.catalog.list_links(info->program, info->id).body);
  }
  if (rest == "me/summary") {
    return summary(s, *info, u);
  }
  if (rest == "me/timeseries") {
    auto r = reports::timeseries_report(s.store, s.catalog, report_query(*info, u));
    return secured({r.status, r.content_type, std::move(r.body), {}});
  }
  if (rest == "me/conversions") {
    return conversions(s, *info, u);
  }
  if (rest == "me/ledger") {
    return ledger(s, *info);
  }
  if (rest == "me/payouts") {
    return payouts(s, *info, u);
  }
  return error(404, "not_found", "no such portal route");
}

Reply files(const Request& req, std::string_view rest) {
  if (req.method() != beast_http::verb::get && req.method() != beast_http::verb::head) {
    return error(405, "method_not_allowed", "the portal's files are read with GET");
  }
  std::optional<Reply> r;
  if (rest.empty()) {
    r = asset_reply("portal/index.html");
  } else if (rest.starts_with("lib/")) {
    r = asset_reply("common/" + std::string(rest.substr(4)));
  } else if (rest.starts_with("vendor/")) {
    r = asset_reply("vendor/" + std::string(rest.substr(7)));
  } else {
    r = asset_reply("portal/" + std::string(rest));
  }
  return r ? std::move(*r) : error(404, "not_found", "no such file");
}

}  // namespace

bool is_portal_path(std::string_view path) noexcept {
  return path == "/portal" || path.starts_with("/portal/");
}

Reply handle_portal(Services& s, const Request& req) {
  auto u = boost::urls::parse_origin_form(req.target());
  if (!u) {
    return error(400, "invalid_target", "the request target is not a valid path");
  }
  std::string path = u->path();
  if (path == "/portal") {
    Reply r = see_other("/portal/");
    r.status = 301;
    return r;
  }
  std::string_view rest = std::string_view(path).substr(8);
  bool post = req.method() == beast_http::verb::post;
  if (rest.starts_with("signin/") && !post) {
    return signin_form(s, req, rest.substr(7));
  }
  if (rest == "signin" && post) {
    return signin(s, req);
  }
  if (rest == "signout" && post) {
    return signout(s, req);
  }
  if (rest.starts_with("api/")) {
    return api(s, req, *u, rest.substr(4));
  }
  return files(req, rest);
}

}  // namespace earnd::http::web
