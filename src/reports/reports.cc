#include "earnd/reports/reports.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include <boost/json.hpp>
#include <date/tz.h>

#include "earnd/common/money.h"
#include "earnd/common/time.h"
#include "earnd/links/catalog.h"
#include "earnd/store/stats.h"
#include "earnd/store/store.h"

namespace json = boost::json;

namespace earnd::reports {
namespace {

using Ms = std::chrono::milliseconds;

struct Reject {
  std::string code;
  std::string message;
};

ReportReply error(unsigned status, std::string_view code, std::string_view message) {
  json::object err{{"code", code}, {"message", message}};
  return {status, "application/json", json::serialize(json::object{{"error", err}})};
}

const date::time_zone* zone(const std::string& name) {
  try {
    return date::locate_zone(name.empty() ? "UTC" : name);
  } catch (const std::exception&) {
    throw Reject{"invalid_tz", "tz must be an IANA time zone such as Europe/Paris"};
  }
}

// A report boundary in Unix ms. A date means that day's start in tz (or, for `to`, the next
// day's start, so the date is included).
std::uint64_t boundary(const std::string& text,
                       const date::time_zone* tz,
                       bool is_to,
                       std::uint64_t fallback) {
  if (text.empty()) {
    return fallback;
  }
  if (auto t = parse_rfc3339_ms(text)) {
    return *t;
  }
  std::istringstream in(text);
  date::local_days day;
  in >> date::parse("%F", day);
  if (in.fail() || text.size() != 10) {
    throw Reject{"invalid_time", "from and to must be dates (2026-12-01) or RFC 3339 times"};
  }
  if (is_to) {
    day += date::days(1);
  }
  auto sys = tz->to_sys(day, date::choose::earliest);
  return static_cast<std::uint64_t>(std::chrono::duration_cast<Ms>(sys.time_since_epoch()).count());
}

struct Totals {
  std::uint64_t clicks = 0, unique_clicks = 0, bot_clicks = 0;
  std::int64_t stats[store::kStatCount] = {};

  void add_clicks(const store::LinkDayCounts& c) {
    clicks += c.clicks;
    unique_clicks += c.unique_clicks;
    bot_clicks += c.bot_clicks;
  }

  void add_stats(const std::vector<std::int64_t>& v) {
    for (std::size_t i = 0; i < v.size() && i < store::kStatCount; ++i) {
      stats[i] = saturating_add(stats[i], v[i]);
    }
  }

  void fill(json::object& row) const {
    row["clicks"] = clicks;
    row["unique_clicks"] = unique_clicks;
    row["bot_clicks"] = bot_clicks;
    row["signups"] = stats[store::kStatSignups];
    row["sales"] = stats[store::kStatSales];
    row["revenue_minor"] =
        saturating_sub(stats[store::kStatRevenueMinor], stats[store::kStatRefundedMinor]);
    row["refunded_minor"] = stats[store::kStatRefundedMinor];
    row["rewards_minor"] = stats[store::kStatRewardsMinor];
    double conversions = static_cast<double>(stats[store::kStatSignups] + stats[store::kStatSales]);
    row["conversion_rate"] =
        unique_clicks == 0
            ? 0.0
            : std::round(conversions / static_cast<double>(unique_clicks) * 1e4) / 1e4;
  }
};

struct Range {
  std::uint32_t from_bucket;
  std::uint32_t to_bucket;
};

// LIMIT: a boundary given as an RFC 3339 time inside a 15-minute bucket counts that whole bucket
// (buckets are the finest aggregate). Dates and whole hours in any zone are exact.
Range bucket_range(std::uint64_t from_ms, std::uint64_t to_ms) {
  return {store::bucket_of(from_ms),
          static_cast<std::uint32_t>((to_ms + store::kBucketMs - 1) / store::kBucketMs)};
}

template <typename OnClicks, typename OnStats>
void scan_referrer(const store::Store& store,
                   const std::string& program,
                   const links::ReferrerInfo& r,
                   Range range,
                   OnClicks on_clicks,
                   OnStats on_stats) {
  for (const auto& code : r.codes) {
    if (store.scan_link_buckets(code, range.from_bucket, range.to_bucket, on_clicks)) {
      throw Reject{"storage", "counters could not be read"};
    }
  }
  if (store.scan_stats(store::stats_prefix(program, r.id), range.from_bucket, range.to_bucket,
                       on_stats)) {
    throw Reject{"storage", "counters could not be read"};
  }
}

constexpr const char* kColumns[] = {"clicks", "unique_clicks", "bot_clicks",    "signups",
                                    "sales",  "revenue_minor", "rewards_minor", "conversion_rate"};

std::string number_cell(const json::value& v) {
  if (v.is_double()) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.4f", v.get_double());
    return buf;
  }
  return json::serialize(v);
}

ReportReply as_csv(const json::array& rows, const std::vector<std::string>& text_columns) {
  std::string out;
  for (const auto& c : text_columns) {
    out += c + ",";
  }
  for (const char* c : kColumns) {
    out += c;
    out += c == kColumns[std::size(kColumns) - 1] ? "\n" : ",";
  }
  for (const auto& r : rows) {
    const auto& row = r.as_object();
    for (const auto& c : text_columns) {
      const json::value& v = row.at(c);
      out += csv_cell(v.is_string() ? std::string_view(v.get_string()) : std::string_view()) + ",";
    }
    for (const char* c : kColumns) {
      out += number_cell(row.at(c));
      out += c == kColumns[std::size(kColumns) - 1] ? "\n" : ",";
    }
  }
  return {200, "text/csv; charset=utf-8", std::move(out)};
}

struct Window {
  const date::time_zone* tz;
  std::uint64_t from_ms;
  std::uint64_t to_ms;
};

Window window_of(const ReportQuery& q) {
  const date::time_zone* tz = zone(q.tz);
  std::uint64_t now = now_ms();
  std::uint64_t to = boundary(q.to, tz, true, now + 1);
  std::uint64_t from =
      boundary(q.from, tz, false, to > 30ull * 86'400'000 ? to - 30ull * 86'400'000 : 0);
  if (from >= to) {
    throw Reject{"invalid_range", "from must be before to"};
  }
  if (to - from > 3700ull * 86'400'000) {
    throw Reject{"invalid_range", "a report covers at most ten years"};
  }
  return {tz, from, to};
}

// The start, in Unix ms, of the hour or day (in tz) that holds t.
std::uint64_t interval_start(std::uint64_t t, const date::time_zone* tz, bool hourly) {
  date::sys_time<Ms> sys{Ms(t)};
  if (hourly) {
    // Floor with t's own offset: going back through local time would fold the second 01:00 of
    // a fall-back day onto the first.
    auto offset = tz->get_info(date::floor<std::chrono::seconds>(sys)).offset;
    auto start = date::floor<std::chrono::hours>(sys + offset) - offset;
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<Ms>(start.time_since_epoch()).count());
  }
  auto local = tz->to_local(sys);
  date::local_time<Ms> start{date::floor<date::days>(local)};
  auto back = tz->to_sys(start, date::choose::earliest);
  return static_cast<std::uint64_t>(back.time_since_epoch().count());
}

std::string local_text(std::uint64_t t, const date::time_zone* tz) {
  date::zoned_time<std::chrono::seconds> z(tz, date::sys_seconds(std::chrono::seconds(t / 1000)));
  return date::format("%FT%T%Ez", z);
}

ReportReply referrers_checked(const store::Store& store,
                              const links::Catalog& catalog,
                              const ReportQuery& q) {
  Window w = window_of(q);
  Range range = bucket_range(w.from_ms, w.to_ms);
  json::array rows;
  for (const auto& r : catalog.referrers_of(q.program)) {
    if (!q.referrer.empty() && r.id != q.referrer) {
      continue;
    }
    Totals t;
    scan_referrer(
        store, q.program, r, range,
        [&](std::uint32_t, const store::LinkDayCounts& c) { t.add_clicks(c); },
        [&](std::uint32_t, const std::vector<std::int64_t>& v) { t.add_stats(v); });
    json::object row{{"referrer_id", r.id},
                     {"external_id", r.external_id},
                     {"name", r.name},
                     {"code", r.codes.empty() ? "" : r.codes.front()}};
    t.fill(row);
    rows.push_back(std::move(row));
  }
  if (q.format == "csv") {
    return as_csv(rows, {"referrer_id", "code"});
  }
  json::object body{{"program", q.program},
                    {"from", format_rfc3339(w.from_ms)},
                    {"to", format_rfc3339(w.to_ms)},
                    {"tz", w.tz->name()},
                    {"rows", std::move(rows)}};
  return {200, "application/json", json::serialize(body)};
}

ReportReply timeseries_checked(const store::Store& store,
                               const links::Catalog& catalog,
                               const ReportQuery& q) {
  Window w = window_of(q);
  bool hourly = q.interval == "hour";
  if (!hourly && q.interval != "day") {
    throw Reject{"invalid_interval", "interval must be hour or day"};
  }
  if (hourly && w.to_ms - w.from_ms > 93ull * 86'400'000) {
    throw Reject{"invalid_range", "hourly series cover at most 93 days"};
  }
  std::map<std::uint64_t, Totals> series;
  for (std::uint64_t t = interval_start(w.from_ms, w.tz, hourly); t < w.to_ms;) {
    series[t];
    // An hour ahead is in the next hour; 25 hours ahead is in the next day, whatever its length.
    std::uint64_t next = interval_start(t + (hourly ? 3'600'000 : 25 * 3'600'000), w.tz, hourly);
    t = next > t ? next : t + 3'600'000;
  }
  auto slot = [&](std::uint32_t bucket) -> Totals& {
    return series[interval_start(std::uint64_t{bucket} * store::kBucketMs, w.tz, hourly)];
  };
  Range range = bucket_range(w.from_ms, w.to_ms);
  std::vector<links::ReferrerInfo> referrers;
  if (q.referrer.empty()) {
    referrers = catalog.referrers_of(q.program);
    referrers.push_back({"", q.program, "", "", {}});  // the unattributed conversions
  } else if (auto r = catalog.referrer(q.referrer); r && r->program == q.program) {
    referrers.push_back(*r);
  } else {
    throw Reject{"unknown_referrer", "no such referrer in this program"};
  }
  for (const auto& r : referrers) {
    scan_referrer(
        store, q.program, r, range,
        [&](std::uint32_t b, const store::LinkDayCounts& c) { slot(b).add_clicks(c); },
        [&](std::uint32_t b, const std::vector<std::int64_t>& v) { slot(b).add_stats(v); });
  }
  json::array rows;
  for (const auto& [start, t] : series) {
    json::object row{{"start", local_text(start, w.tz)}, {"start_ms", start}};
    t.fill(row);
    rows.push_back(std::move(row));
  }
  if (q.format == "csv") {
    return as_csv(rows, {"start"});
  }
  json::object body{{"program", q.program},
                    {"referrer", q.referrer},
                    {"interval", hourly ? "hour" : "day"},
                    {"tz", w.tz->name()},
                    {"rows", std::move(rows)}};
  return {200, "application/json", json::serialize(body)};
}

}  // namespace

ReportReply referrers_report(const store::Store& store,
                             const links::Catalog& catalog,
                             const ReportQuery& q) {
  try {
    if (q.format != "json" && q.format != "csv") {
      return error(400, "invalid_format", "format must be json or csv");
    }
    return referrers_checked(store, catalog, q);
  } catch (const Reject& r) {
    return error(r.code == "storage" ? 503 : 400, r.code, r.message);
  }
}

ReportReply timeseries_report(const store::Store& store,
                              const links::Catalog& catalog,
                              const ReportQuery& q) {
  try {
    if (q.format != "json" && q.format != "csv") {
      return error(400, "invalid_format", "format must be json or csv");
    }
    return timeseries_checked(store, catalog, q);
  } catch (const Reject& r) {
    return error(r.code == "storage" ? 503 : 400, r.code, r.message);
  }
}

std::optional<std::uint64_t> parse_boundary(std::string_view text,
                                            std::string_view tz,
                                            bool is_to) {
  try {
    return boundary(std::string(text), zone(std::string(tz)), is_to, 0);
  } catch (const Reject&) {
    return std::nullopt;
  }
}

std::string csv_cell(std::string_view s) {
  std::string out;
  // The OWASP list: a spreadsheet takes a cell starting with one of these as a formula.
  if (!s.empty() && std::string_view("=+-@\t\r").find(s[0]) != std::string_view::npos) {
    out = "'";
  }
  out.append(s);
  if (out.find_first_of(",\"\r\n") != std::string::npos) {
    std::string quoted = "\"";
    for (char c : out) {
      quoted += c;
      if (c == '"') {
        quoted += '"';
      }
    }
    return quoted + "\"";
  }
  return out;
}

}  // namespace earnd::reports
