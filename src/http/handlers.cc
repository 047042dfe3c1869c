#include "handlers.h"

#include <atomic>
#include <charconv>
#include <chrono>
#include <map>

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "conversion_routes.h"
#include "earnd/attribution/conversions.h"
#include "earnd/attribution/matcher.h"
#include "earnd/common/click.h"
#include "earnd/common/hash.h"
#include "earnd/common/secrets.h"
#include "earnd/common/time.h"
#include "earnd/ingest/importer.h"
#include "earnd/ingest/pipeline.h"
#include "earnd/links/catalog.h"
#include "earnd/metrics/metrics.h"
#include "earnd/reports/reports.h"
#include "earnd/rewards/ledger.h"
#include "earnd/store/store.h"
#include "earnd/webhooks/outbox.h"
#include "web_routes.h"

namespace json = boost::json;
namespace beast_http = boost::beast::http;

namespace earnd::http {
namespace {

Reply from_admin(const links::AdminReply& r) {
  return {r.status, "application/json", json::serialize(r.body), {}};
}

// Parses a JSON request body; a 400 reply when it is not JSON.
std::optional<json::value> parse_body(const Request& req, Reply& error) {
  ErrorCode ec;
  json::parse_options opt;
  opt.max_depth = 32;
  json::value v = json::parse(req.body(), ec, {}, opt);
  if (ec) {
    error = json_error(400, "invalid_json", "the body is not valid JSON: " + ec.message());
    return std::nullopt;
  }
  return v;
}

// /v1/cluster/{status,drain,replay}: scale-out mode only (404 cluster_off without --cluster).
Reply cluster_route(
    const Services& s, const Request& req, std::string_view what, bool get, bool post) {
  if (!s.cluster_status) {
    return json_error(404, "cluster_off", "earnd runs in single-node mode (no --cluster)");
  }
  if (what == "status" && get) {
    return {200, "application/json", s.cluster_status(), {}};
  }
  if ((what != "drain" && what != "replay") || !post) {
    return json_error(404, "not_found", "no such admin route");
  }
  Reply err;
  auto body = parse_body(req, err);
  if (!body) {
    return err;
  }
  const json::object* o = body->is_object() ? &body->as_object() : nullptr;
  if (what == "drain") {
    const json::value* v = o ? o->if_contains("server") : nullptr;
    if (v == nullptr || !v->is_string() || v->get_string().empty() || v->get_string().size() > 64) {
      return json_error(400, "missing_field",
                        "server (the NATS server_name to move leaders off, 1 to 64 characters) "
                        "is required");
    }
    auto r = s.cluster_step_down(std::string_view(v->get_string()));
    return r ? Reply{200, "application/json", std::move(*r), {}}
             : json_error(503, "cluster_unavailable", "the NATS cluster cannot be reached");
  }
  const json::value* v = o ? o->if_contains("since") : nullptr;
  auto since = v != nullptr && v->is_string() ? parse_rfc3339_ms(v->get_string()) : std::nullopt;
  if (!since) {
    return json_error(400, "invalid_since", "since must be an RFC 3339 time");
  }
  s.cluster_replay(*since);
  return {202,
          "application/json",
          json::serialize(json::object{{"replay_from", format_rfc3339(*since)}}),
          {}};
}

std::string param(const boost::urls::url_view& u, std::string_view name) {
  auto params = u.params();
  auto it = params.find(name);
  if (it == params.end()) {
    return {};
  }
  return std::string((*it).value);
}

// POST /v1/import/clicks?program=ID: a part of a clicks CSV (the attribution-bench format, header
// included) stored through this server's own writer; in scale-out mode through its spool to the
// stream, so every worker indexes it. `earnctl import clicks --node URL` sends a file in parts.
Reply import_clicks(Services& s, const Request& req, const boost::urls::url_view& u) {
  if (s.import_sink == nullptr) {
    return json_error(404, "not_found", "no such admin route");
  }
  std::string program = param(u, "program");
  if (program.empty()) {
    program = "default";
  }
  if (!links::is_valid_program_id(program)) {
    // Not echoed: it may be any bytes.
    return json_error(400, "invalid_field", "program must be a valid program id");
  }
  ingest::ImportOptions o;
  o.program = program;
  o.max_batch = s.config.storage.max_batch;
  o.queue_capacity = 8192;
  o.velocity_limit = s.config.clicks.velocity_limit;
  o.velocity_window_ms = s.config.clicks.velocity_window_s * 1000;
  o.dedupe_capacity = 65'536;  // unique flags within this part (the file is sent in parts)
  o.shard_count = s.config.clicks.shard_count;
  try {
    KeyedHasher hasher(s.visitor_secret);
    auto st = ingest::import_clicks_text(req.body(), "body", s.catalog, hasher, *s.import_sink,
                                         s.store, o);
    json::object out{{"clicks", st.clicks},
                     {"duplicates", st.duplicates},
                     {"bots", st.bots},
                     {"unique", st.unique},
                     {"programs_created", st.programs_created},
                     {"referrers_created", st.referrers_created},
                     {"links_created", st.links_created}};
    return {200, "application/json", json::serialize(out), {}};
  } catch (const ingest::ImportError& e) {
    return json_error(400, "invalid_import", e.what());
  }
}

// POST /v1/cluster/attribute?model=&window_ms=&program=: the scatter half of a batch attribution
// (earnctl attribute --node URL ...). The body is a part of a conversions CSV; the rows whose
// visitor shard this worker holds are matched against its index and summed per referrer
// (by external id); the others are left to the worker holding them. The answer says how many
// rows were answered, so the gatherer can check that every row was answered exactly once.
Reply cluster_attribute(Services& s, const Request& req, const boost::urls::url_view& u) {
  if (!s.cluster_held) {
    return json_error(404, "cluster_off", "earnd runs in single-node mode (no --cluster)");
  }
  std::string model_text = param(u, "model");
  auto model = attribution::parse_model(model_text.empty() ? "last_click" : model_text);
  if (!model) {
    return json_error(400, "invalid_field", "model must be last_click or first_click");
  }
  std::uint64_t window_ms = 30ull * 86'400'000;
  if (auto w = param(u, "window_ms"); !w.empty()) {
    auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), window_ms);
    if (ec != std::errc() || end != w.data() + w.size() || window_ms == 0) {
      return json_error(400, "invalid_field", "window_ms must be a positive integer");
    }
  }
  std::string program = param(u, "program");
  std::vector<bool> held = s.cluster_held();
  std::uint64_t applied = s.cluster_applied_seq();
  KeyedHasher hasher(s.visitor_secret);
  const std::uint32_t shards = s.config.clicks.shard_count;

  struct Sum {
    std::uint64_t conversions = 0;
    std::uint64_t revenue = 0;
  };

  std::map<std::string, Sum> by_referrer;
  Sum unattributed;
  std::uint64_t rows = 0;
  std::uint64_t answered = 0;
  ErrorCode failed;
  try {
    ingest::read_conversions_text(req.body(), "body", [&](const ingest::ConversionRow& r) {
      ++rows;
      std::uint64_t visitor = ingest::import_visitor_hash(hasher, r.visitor_id);
      std::uint64_t shard = visitor % shards;
      if (failed || shard >= held.size() || !held[shard]) {
        return;
      }
      ++answered;
      auto winner = attribution::match(s.store, {.visitor_hash = visitor,
                                                 .at_ms = r.ts_ms,
                                                 .window_ms = window_ms,
                                                 .model = *model,
                                                 .program = program,
                                                 .need_id = false});
      if (!winner) {
        failed = winner.error();
        return;
      }
      Sum* t = &unattributed;
      if (*winner) {
        const std::string& id = (*winner)->referrer_id;
        t = &by_referrer[s.catalog.referrer_external_id(id).value_or(id)];
      }
      t->conversions += 1;
      t->revenue += r.kind == "sale" ? r.amount_cents : 0;
    });
  } catch (const ingest::ImportError& e) {
    return json_error(400, "invalid_conversions", e.what());
  }
  if (failed) {
    return json_error(503, "storage_error",
                      "reading the visitor index failed: " + failed.message());
  }
  json::array referrers;
  for (const auto& [id, t] : by_referrer) {
    referrers.push_back(
        json::object{{"referrer_id", id}, {"conversions", t.conversions}, {"revenue", t.revenue}});
  }
  json::object out{{"rows", rows},
                   {"answered", answered},
                   {"applied_seq", applied},
                   {"unattributed", json::object{{"conversions", unattributed.conversions},
                                                 {"revenue", unattributed.revenue}}},
                   {"referrers", std::move(referrers)}};
  return {200, "application/json", json::serialize(out), {}};
}

// Accepts Unix milliseconds, a date (2026-12-01) or an RFC 3339 UTC time. Returns false when it is
// none of these.
bool parse_time_ms(std::string_view s, std::uint64_t& out) {
  if (s.empty()) {
    return false;
  }
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec == std::errc() && p == s.data() + s.size()) {
    return true;
  }
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  std::string text(s);
  int n = std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec);
  if (n != 3 && n != 6) {
    return false;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970) {
    return false;
  }
  // Days from civil date (proleptic Gregorian), after Howard Hinnant's public-domain algorithm.
  y -= mo <= 2;
  const int era = y / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  std::int64_t days = static_cast<std::int64_t>(era) * 146097 + doe - 719468;
  out = static_cast<std::uint64_t>(((days * 24 + h) * 60 + mi) * 60 + sec) * 1000;
  return true;
}

Reply export_clicks(Services& s, const boost::urls::url_view& u) {
  std::uint64_t from = 0, to = UINT64_MAX;
  std::string f = param(u, "from"), t = param(u, "to"), program = param(u, "program");
  if ((!f.empty() && !parse_time_ms(f, from)) || (!t.empty() && !parse_time_ms(t, to))) {
    return json_error(400, "invalid_time", "from and to must be Unix ms, a date or RFC 3339");
  }
  if (!t.empty() && t.size() == 10) {
    to += 86'400'000;  // a date as `to` includes that whole day
  }
  Reply r;
  r.content_type = "text/csv";
  r.body = std::string(kClickCsvHeader);
  auto scanned = s.store.scan_clicks(from, to, [&](const ClickRecord& c) {
    if (program.empty() || c.program == program) {
      append_click_csv(c, r.body);
    }
    return true;
  });
  if (!scanned) {
    return json_error(503, "storage", "clicks could not be read");
  }
  return r;
}

bool authorized(Services& s, const Request& req) {
  auto it = req.find(beast_http::field::authorization);
  if (it == req.end()) {
    return false;
  }
  std::string_view key = bearer_token(it->value());
  return !key.empty() && constant_time_equal(key, s.config.server.admin_key);
}

Reply from_pair(std::pair<unsigned, std::string> r) {
  return {r.first, "application/json", std::move(r.second), {}};
}

// Ledger, payouts and webhook deliveries.
std::optional<Reply> route_money(Services& s,
                                 ConversionQueue& serial,
                                 const Request& req,
                                 const boost::urls::url_view& u,
                                 const std::vector<std::string>& seg) {
  using V = beast_http::verb;
  auto verb = req.method();
  if (seg.size() == 4 && seg[1] == "referrers" && seg[3] == "ledger" && verb == V::get) {
    auto v = s.ledger.view(seg[2]);
    return v ? Reply{200, "application/json", json::serialize(*v), {}}
             : json_error(404, "not_found", "no such referrer");
  }
  if (seg.size() == 2 && seg[1] == "payouts" && verb == V::post) {
    Reply err;
    auto body = parse_body(req, err);
    if (!body) {
      return err;
    }
    const json::value* p = body->is_object() ? body->as_object().if_contains("program") : nullptr;
    if (p == nullptr || !p->is_string()) {
      return json_error(400, "missing_field", "program is required");
    }
    std::string program(p->get_string());
    return from_pair(serial.run([&] { return s.conversions.create_payouts(program); }));
  }
  if (seg.size() == 2 && seg[1] == "payouts" && verb == V::get) {
    return Reply{200,
                 "application/json",
                 json::serialize(s.ledger.list_payouts(param(u, "program"), param(u, "status"))),
                 {}};
  }
  if (seg.size() == 3 && seg[1] == "payouts" && seg[2] == "due" && verb == V::get) {
    std::string program = param(u, "program");
    if (program.empty()) {
      return json_error(400, "missing_field", "program is required");
    }
    auto due = s.ledger.due_payouts(program);
    return due ? Reply{200, "application/json", json::serialize(*due), {}}
               : json_error(404, "not_found", "no such program");
  }
  if (seg.size() == 3 && seg[1] == "payouts" && seg[2].ends_with(".csv") && verb == V::get) {
    auto csv = s.ledger.payout_csv(std::string_view(seg[2]).substr(0, seg[2].size() - 4));
    return csv ? Reply{200, "text/csv; charset=utf-8", std::move(*csv), {}}
               : json_error(404, "not_found", "no such payout");
  }
  if (seg.size() == 4 && seg[1] == "payouts" && seg[3] == "paid" && verb == V::post) {
    std::string id = seg[2];
    return from_pair(serial.run([&] { return s.conversions.mark_paid(id); }));
  }
  if (seg.size() >= 3 && seg[1] == "webhooks" && seg[2] == "deliveries") {
    if (s.outbox == nullptr) {
      return json_error(404, "not_found", "webhooks are off");
    }
    if (seg.size() == 3 && verb == V::get) {
      Reply err;
      auto p = web::read_paging(u, 50, 500, err);
      if (!p) {
        return err;
      }
      return from_pair(
          s.outbox->list(param(u, "program"), param(u, "status"), p->page, p->per_page));
    }
    if (seg.size() == 5 && seg[4] == "redeliver" && verb == V::post) {
      return from_pair(s.outbox->redeliver(seg[3]));
    }
  }
  return std::nullopt;
}

Reply route_admin(Services& s,
                  ConversionQueue& serial,
                  const Request& req,
                  const boost::urls::url_view& u) {
  std::vector<std::string> seg;
  for (auto p : u.segments()) {
    seg.push_back(p);
  }
  auto verb = req.method();
  using V = beast_http::verb;
  Reply err;
  auto with_body = [&](auto&& fn) -> Reply {
    auto body = parse_body(req, err);
    return body ? from_admin(fn(*body)) : err;
  };

  if (!seg.empty() && seg[0] == "v1") {
    if (auto r = route_money(s, serial, req, u, seg)) {
      return std::move(*r);
    }
  }
  if (seg.size() >= 2 && seg[0] == "v1" && seg[1] == "programs") {
    if (seg.size() == 2 && verb == V::post) {
      return with_body([&](auto& b) { return s.catalog.create_program(b); });
    }
    if (seg.size() == 3 && verb == V::get) {
      return from_admin(s.catalog.get_program(seg[2]));
    }
    if (seg.size() == 3 && verb == V::patch) {
      return with_body([&](auto& b) { return s.catalog.patch_program(seg[2], b); });
    }
    if (seg.size() == 4 && seg[3] == "keys" && verb == V::post) {
      return from_admin(s.catalog.rotate_keys(seg[2]));
    }
    if (seg.size() == 4 && seg[3] == "referrers" && verb == V::post) {
      return with_body([&](auto& b) { return s.catalog.create_referrer(seg[2], b); });
    }
  }
  if (seg.size() >= 2 && seg[0] == "v1" && seg[1] == "links") {
    if (seg.size() == 2 && verb == V::post) {
      return with_body([&](auto& b) { return s.catalog.create_link(b); });
    }
    if (seg.size() == 2 && verb == V::get) {
      return from_admin(s.catalog.list_links(param(u, "program"), param(u, "referrer_id")));
    }
    if (seg.size() == 3 && verb == V::patch) {
      return with_body([&](auto& b) { return s.catalog.patch_link(seg[2], b); });
    }
  }
  if (seg.size() == 3 && seg[0] == "v1" && seg[1] == "clicks" && seg[2] == "export" &&
      verb == V::get) {
    return export_clicks(s, u);
  }
  if (seg.size() == 4 && seg[0] == "v1" && seg[1] == "conversions" && seg[3] == "explain" &&
      verb == V::get) {
    auto r = s.conversions.explain(seg[2], param(u, "program"));
    return {r.status, "application/json", std::move(r.body), {}};
  }
  if (seg.size() == 3 && seg[0] == "v1" && seg[1] == "reports" && verb == V::get &&
      (seg[2] == "referrers" || seg[2] == "timeseries")) {
    reports::ReportQuery q{.program = param(u, "program"),
                           .referrer = param(u, "referrer"),
                           .from = param(u, "from"),
                           .to = param(u, "to")};
    if (auto tz = param(u, "tz"); !tz.empty()) {
      q.tz = tz;
    }
    if (auto i = param(u, "interval"); !i.empty()) {
      q.interval = i;
    }
    if (auto f = param(u, "format"); !f.empty()) {
      q.format = f;
    }
    auto r = seg[2] == "referrers" ? reports::referrers_report(s.store, s.catalog, q)
                                   : reports::timeseries_report(s.store, s.catalog, q);
    return {r.status, r.content_type, std::move(r.body), {}};
  }
  if (seg.size() == 1 && seg[0] == "metrics" && verb == V::get) {
    return {200, "text/plain; version=0.0.4", s.metrics.render(), {}};
  }
  if (seg.size() == 3 && seg[0] == "v1" && seg[1] == "import" && seg[2] == "clicks" &&
      verb == V::post) {
    return import_clicks(s, req, u);
  }
  if (seg.size() == 3 && seg[0] == "v1" && seg[1] == "cluster" && seg[2] == "attribute" &&
      verb == V::post) {
    return cluster_attribute(s, req, u);
  }
  if (seg.size() == 3 && seg[1] == "cluster") {
    return cluster_route(s, req, seg[2], verb == V::get, verb == V::post);
  }
  return json_error(404, "not_found", "no such admin route");
}

}  // namespace

std::string_view bearer_token(std::string_view authorization) noexcept {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) {
    return {};
  }
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != kScheme[i]) {
      return {};
    }
  }
  return authorization.substr(kScheme.size());
}

Reply json_error(unsigned status, std::string_view code, std::string_view message) {
  auto r = links::error_reply(status, code, message);
  return {status, "application/json", json::serialize(r.body), {}};
}

Reply handle_admin(Services& s, ConversionQueue& serial, const Request& req) {
  auto u = boost::urls::parse_origin_form(req.target());
  if (!u) {
    return json_error(400, "invalid_target", "the request target is not a valid path");
  }
  if (u->path() == "/healthz") {
    return {200, "application/json", R"({"status":"ok"})", {}};
  }
  if (auto page = web::handle_admin_pages(s, req, u->path())) {
    return std::move(*page);
  }
  if (!authorized(s, req)) {
    // The dashboard's staff cookie stands in for the key; its writes also need the CSRF token.
    auto cookie = web::admin_cookie_auth(s, req);
    if (cookie == web::CookieAuth::kForbidden) {
      return json_error(403, "csrf", "a cookie-authenticated write needs X-CSRF-Token");
    }
    if (cookie == web::CookieAuth::kNone) {
      Reply r = json_error(401, "unauthorized", "send Authorization: Bearer <admin key>");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
  }
  if (auto r = web::route_admin_lists(s, req, *u)) {
    return std::move(*r);
  }
  return route_admin(s, serial, req, *u);
}

// A successful probe write is trusted for a second: /readyz is public and unauthenticated, so a
// flood of it must not become a flood of RocksDB writes. A failed probe is not reused, so
// readiness returns with the first good write (a refused write costs no disk I/O). One process
// serves one store.
static bool storage_probe_ok(store::Store& store) {
  static std::atomic<std::int64_t> good_until_ms{0};
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count();
  if (now < good_until_ms.load(std::memory_order_relaxed)) {
    return true;
  }
  if (store.probe_write()) {
    return false;
  }
  good_until_ms.store(now + 1000, std::memory_order_relaxed);
  return true;
}

Reply handle_public(Services& s, const Request& req) {
  std::string_view target = req.target();
  std::string_view path = target.substr(0, target.find('?'));
  if (path == "/healthz") {
    return {200, "application/json", R"({"status":"ok"})", {}};
  }
  if (web::is_portal_path(path)) {
    return web::handle_portal(s, req);
  }
  if (path == "/readyz") {
    if (req.method() != beast_http::verb::get && req.method() != beast_http::verb::head) {
      Reply r = json_error(405, "method_not_allowed", "use GET or HEAD");
      r.headers.emplace_back("Allow", "GET, HEAD");
      return r;
    }
    bool storage = s.pipeline.storage_ok() && storage_probe_ok(s.store);
    bool queue = s.pipeline.queue_depth() < s.pipeline.queue_capacity() * 9 / 10;
    json::object o;
    o["status"] = storage && queue ? "ready" : "not_ready";
    o["storage_writable"] = storage;
    o["ingest_saturated"] = !queue;
    o["restart_required"] = s.store.needs_restart();
    return {storage && queue ? 200u : 503u, "application/json", json::serialize(o), {}};
  }
  if (path == "/v1/earnd.js") {
    Reply r{200, "text/javascript; charset=utf-8", std::string(earnd_js()), {}};
    r.headers.emplace_back("Cache-Control", "public, max-age=3600");
    r.headers.emplace_back("Access-Control-Allow-Origin", "*");
    return r;
  }
  return json_error(404, "not_found", "no such route");
}

std::string_view reason_phrase(unsigned status) noexcept {
  return beast_http::obsolete_reason(static_cast<beast_http::status>(status));
}

}  // namespace earnd::http
