#include "earnd/reports/reports.h"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "earnd/attribution/conversions.h"
#include "earnd/common/click.h"
#include "earnd/common/click_id.h"
#include "earnd/common/time.h"
#include "earnd/links/catalog.h"
#include "earnd/rewards/ledger.h"
#include "earnd/store/store.h"

namespace earnd::reports {
namespace {

namespace json = boost::json;

constexpr std::uint64_t kMinuteMs = 60'000;
constexpr std::uint64_t kHourMs = 60 * kMinuteMs;
constexpr std::string_view kNewYork = "America/New_York";

// A JSON string's text, or its serialization when it is no string (so that it compares unequal).
std::string text(const json::value& v) {
  return v.is_string() ? std::string(v.get_string()) : json::serialize(v);
}

// A UTC time in Unix ms, from its RFC 3339 text.
std::uint64_t utc(std::string_view text) {
  auto t = parse_rfc3339_ms(text);
  EXPECT_TRUE(t.has_value()) << text;
  return t.value_or(0);
}

// Clicks written as the ingest writer writes them and sales through the real conversion
// service, on a real store; program "acme" with referrer "ana" (link code "-ana", which a
// spreadsheet would read as a formula).
class ReportsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "earnd_reports_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    store_ = store::Store::open({.data_dir = dir_, .block_cache_mb = 8});
    catalog_ = std::make_unique<links::Catalog>(*store_, "https://go.example.com");
    ledger_ = std::make_unique<rewards::Ledger>(*store_, *catalog_);
    service_ = std::make_unique<attribution::ConversionService>(
        *store_, *catalog_, *ledger_, nullptr, attribution::ConversionOptions{.sync = false});
    json::object program{{"id", "acme"},
                         {"currency", "USD"},
                         {"allowed_hosts", json::array{"shop.example.com"}},
                         {"destination", "https://shop.example.com/"},
                         {"rewards", json::array()}};
    ASSERT_EQ(catalog_->create_program(program).status, 201u);
    links::AdminReply r = catalog_->create_referrer(
        "acme", json::object{{"external_id", "u_ana"}, {"name", "Ana"}, {"code", "-ana"}});
    ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
    ana_ = std::string(r.body.at("id").as_string());
  }

  void TearDown() override {
    service_.reset();
    ledger_.reset();
    catalog_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // One human click on ana's link at ts_ms; returns its click id.
  std::string click(std::uint64_t ts_ms) {
    ClickRecord c;
    c.ts_ms = ts_ms;
    c.id = make_click_id(ts_ms, 0);
    c.visitor_hash = ts_ms | 1;
    c.program = "acme";
    c.referrer_id = ana_;
    c.code = "-ana";
    store::ClickBatch batch = store_->make_click_batch();
    batch.add(c);
    EXPECT_FALSE(store_->write_clicks(batch, false));
    return c.id.to_string();
  }

  // A click a minute before ts_ms and a sale of amount at ts_ms credited to it.
  void sale(std::string_view event_id, std::uint64_t ts_ms, std::int64_t amount) {
    std::string id = click(ts_ms - kMinuteMs);
    std::vector<attribution::ConversionRequest> batch(1);
    batch[0].program = "acme";
    batch[0].body = json::object{{"event_id", event_id}, {"type", "sale"},
                                 {"click_id", id},       {"amount_minor", amount},
                                 {"currency", "USD"},    {"occurred_at", format_rfc3339(ts_ms)}};
    auto replies = service_->process(batch);
    ASSERT_EQ(replies[0].status, 201u) << replies[0].body;
  }

  json::array series(std::string_view interval, std::string_view from, std::string_view to) {
    ReportQuery q{.program = "acme",
                  .from = std::string(from),
                  .to = std::string(to),
                  .tz = std::string(kNewYork),
                  .interval = std::string(interval)};
    ReportReply r = timeseries_report(*store_, *catalog_, q);
    EXPECT_EQ(r.status, 200u) << r.body;
    json::value v = json::parse(r.body);
    EXPECT_EQ(text(v.at("tz")), kNewYork);
    return v.at("rows").as_array();
  }

  static std::int64_t num(const json::value& row, std::string_view key) {
    return row.at(key).to_number<std::int64_t>();
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<links::Catalog> catalog_;
  std::unique_ptr<rewards::Ledger> ledger_;
  std::unique_ptr<attribution::ConversionService> service_;
  std::string ana_;
};

TEST_F(ReportsTest, DateBoundariesAreLocalMidnightsAcrossSpringForward) {
  EXPECT_EQ(parse_boundary("2026-03-08", kNewYork, false), utc("2026-03-08T05:00:00Z"));
  EXPECT_EQ(parse_boundary("2026-03-08", kNewYork, true), utc("2026-03-09T04:00:00Z"));
  EXPECT_EQ(parse_boundary("2026-11-01", kNewYork, false), utc("2026-11-01T04:00:00Z"));
  EXPECT_EQ(parse_boundary("2026-11-01", kNewYork, true), utc("2026-11-02T05:00:00Z"));
  EXPECT_EQ(parse_boundary("2026-11-01", "Mars/Olympus", false), std::nullopt);
}

// 2026-03-08 in New York has 23 hours: 00:00 EST is 05:00Z, the next midnight (EDT) 04:00Z.
TEST_F(ReportsTest, DailySeriesPutsClicksAndSalesOnTheirLocalDayAcross23HourDay) {
  click(utc("2026-03-08T04:30:00Z"));                                      // 03-07 23:30 EST
  click(utc("2026-03-08T05:00:00Z"));                                      // 03-08 00:00 EST
  click(utc("2026-03-09T03:45:00Z"));                                      // 03-08 23:45 EDT
  click(utc("2026-03-09T04:00:00Z"));                                      // 03-09 00:00 EDT
  ASSERT_NO_FATAL_FAILURE(sale("s1", utc("2026-03-09T03:30:00Z"), 4990));  // 03-08 23:30 EDT

  json::array rows = series("day", "2026-03-07", "2026-03-09");
  ASSERT_EQ(rows.size(), 3u) << json::serialize(rows);
  EXPECT_EQ(rows[0].at("start"), "2026-03-07T00:00:00-05:00");
  EXPECT_EQ(rows[1].at("start"), "2026-03-08T00:00:00-05:00");
  EXPECT_EQ(rows[2].at("start"), "2026-03-09T00:00:00-04:00");
  EXPECT_EQ(num(rows[1], "start_ms"), static_cast<std::int64_t>(utc("2026-03-08T05:00:00Z")));
  EXPECT_EQ(num(rows[2], "start_ms") - num(rows[1], "start_ms"), 23 * kHourMs);
  EXPECT_EQ(num(rows[0], "clicks"), 1);
  EXPECT_EQ(num(rows[1], "clicks"), 3);  // two plus the sale's click at 23:29 EDT
  EXPECT_EQ(num(rows[2], "clicks"), 1);
  EXPECT_EQ(num(rows[1], "sales"), 1);
  EXPECT_EQ(num(rows[1], "revenue_minor"), 4990);
  EXPECT_EQ(num(rows[0], "sales") + num(rows[2], "sales"), 0);
}

TEST_F(ReportsTest, HourlySeriesHas23HoursOnSpringForwardDay) {
  click(utc("2026-03-08T06:59:00Z"));  // 01:59 EST
  click(utc("2026-03-08T07:15:00Z"));  // 03:15 EDT: 02:00 does not exist
  json::array rows = series("hour", "2026-03-08", "2026-03-08");
  ASSERT_EQ(rows.size(), 23u) << json::serialize(rows);
  EXPECT_EQ(rows[0].at("start"), "2026-03-08T00:00:00-05:00");
  EXPECT_EQ(rows[1].at("start"), "2026-03-08T01:00:00-05:00");
  EXPECT_EQ(rows[2].at("start"), "2026-03-08T03:00:00-04:00");
  EXPECT_EQ(rows[22].at("start"), "2026-03-08T23:00:00-04:00");
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_EQ(num(rows[i], "start_ms") - num(rows[i - 1], "start_ms"), kHourMs) << i;
  }
  EXPECT_EQ(num(rows[1], "clicks"), 1);
  EXPECT_EQ(num(rows[2], "clicks"), 1);
}

// 2026-11-01 in New York has 25 hours: 01:00-02:00 happens twice, first in EDT, then in EST.
TEST_F(ReportsTest, HourlySeriesHas25HoursAndBothOneOClocksOnFallBackDay) {
  click(utc("2026-11-01T05:30:00Z"));                                      // 01:30 EDT
  click(utc("2026-11-01T06:30:00Z"));                                      // 01:30 EST
  ASSERT_NO_FATAL_FAILURE(sale("s1", utc("2026-11-01T06:45:00Z"), 1200));  // 01:45 EST
  json::array rows = series("hour", "2026-11-01", "2026-11-01");
  ASSERT_EQ(rows.size(), 25u) << json::serialize(rows);
  EXPECT_EQ(rows[1].at("start"), "2026-11-01T01:00:00-04:00");
  EXPECT_EQ(rows[2].at("start"), "2026-11-01T01:00:00-05:00");
  EXPECT_EQ(rows[3].at("start"), "2026-11-01T02:00:00-05:00");
  EXPECT_EQ(num(rows[2], "start_ms"), static_cast<std::int64_t>(utc("2026-11-01T06:00:00Z")));
  EXPECT_EQ(num(rows[1], "clicks"), 1);
  EXPECT_EQ(num(rows[2], "clicks"), 2);
  EXPECT_EQ(num(rows[1], "sales"), 0);
  EXPECT_EQ(num(rows[2], "sales"), 1);
  EXPECT_EQ(num(rows[2], "revenue_minor"), 1200);
}

TEST_F(ReportsTest, DailySeriesHas25HourDayOnFallBack) {
  click(utc("2026-11-01T04:00:00Z"));  // 11-01 00:00 EDT
  click(utc("2026-11-02T04:30:00Z"));  // 11-01 23:30 EST (11-02 in UTC)
  click(utc("2026-11-02T05:00:00Z"));  // 11-02 00:00 EST
  json::array rows = series("day", "2026-10-31", "2026-11-02");
  ASSERT_EQ(rows.size(), 3u) << json::serialize(rows);
  EXPECT_EQ(rows[1].at("start"), "2026-11-01T00:00:00-04:00");
  EXPECT_EQ(rows[2].at("start"), "2026-11-02T00:00:00-05:00");
  EXPECT_EQ(num(rows[2], "start_ms") - num(rows[1], "start_ms"), 25 * kHourMs);
  EXPECT_EQ(num(rows[0], "clicks"), 0);
  EXPECT_EQ(num(rows[1], "clicks"), 2);
  EXPECT_EQ(num(rows[2], "clicks"), 1);
}

TEST_F(ReportsTest, FromAndToDatesAreInclusiveInTheZone) {
  click(utc("2026-03-08T04:45:00Z"));  // 03-07 23:45 EST: before
  click(utc("2026-03-08T05:00:00Z"));  // first instant of 03-08
  click(utc("2026-03-09T03:45:00Z"));  // last quarter hour of 03-08
  click(utc("2026-03-09T04:00:00Z"));  // 03-09: after
  ASSERT_NO_FATAL_FAILURE(sale("s1", utc("2026-03-08T12:00:00Z"), 700));
  ReportQuery q{
      .program = "acme", .from = "2026-03-08", .to = "2026-03-08", .tz = std::string(kNewYork)};
  ReportReply r = referrers_report(*store_, *catalog_, q);
  ASSERT_EQ(r.status, 200u) << r.body;
  json::array rows = json::parse(r.body).at("rows").as_array();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(text(rows[0].at("referrer_id")), ana_);
  EXPECT_EQ(num(rows[0], "clicks"), 3);
  EXPECT_EQ(num(rows[0], "sales"), 1);
  EXPECT_EQ(num(rows[0], "revenue_minor"), 700);

  q.tz = "UTC";  // the same dates in UTC hold other clicks: 04:45Z and 05:00Z of 03-08
  r = referrers_report(*store_, *catalog_, q);
  EXPECT_EQ(num(json::parse(r.body).at("rows").at(0), "clicks"), 3);
  q.to = "2026-03-09";
  r = referrers_report(*store_, *catalog_, q);
  EXPECT_EQ(num(json::parse(r.body).at("rows").at(0), "clicks"), 5);
}

TEST_F(ReportsTest, CsvNeutralizesFormulaCells) {
  EXPECT_EQ(csv_cell("=SUM(A1)"), "'=SUM(A1)");
  EXPECT_EQ(csv_cell("+1"), "'+1");
  EXPECT_EQ(csv_cell("-1"), "'-1");
  EXPECT_EQ(csv_cell("@cmd"), "'@cmd");
  EXPECT_EQ(csv_cell("\t=1"), "'\t=1");
  EXPECT_EQ(csv_cell("\r=1"), "\"'\r=1\"");
  EXPECT_EQ(csv_cell("=a,b"), "\"'=a,b\"");
  EXPECT_EQ(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csv_cell("ana"), "ana");

  click(utc("2026-03-08T12:00:00Z"));
  ReportQuery q{.program = "acme",
                .from = "2026-03-08",
                .to = "2026-03-08",
                .tz = std::string(kNewYork),
                .format = "csv"};
  ReportReply r = referrers_report(*store_, *catalog_, q);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.content_type.rfind("text/csv", 0), 0u);
  EXPECT_EQ(r.body,
            "referrer_id,code,clicks,unique_clicks,bot_clicks,signups,sales,"
            "revenue_minor,rewards_minor,conversion_rate\n" +
                ana_ + ",'-ana,1,1,0,0,0,0,0,0.0000\n");
}

}  // namespace
}  // namespace earnd::reports
