// The funnel over real HTTP: a browser click on a referral link, then a signup, a sale and a
// partial refund posted to /v1/conversions, read back through explain, the referrer report and
// the referrer's ledger.

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "server_fixture.h"

namespace earnd::integration {
namespace {

namespace json = boost::json;

std::string text(const json::value& v) {
  return v.is_string() ? std::string(v.get_string()) : json::serialize(v);
}

// Signups pay the referrer 5.00, sales 20% for a year of the customer's sales; no hold, so
// every reward is approved at once.
class ConversionFlowTest : public EarndTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(start_server());
    json::object program{
        {"id", kProgramId},
        {"currency", "USD"},
        {"destination", kDestination},
        {"allowed_hosts", json::array{"shop.example.com"}},
        {"rewards", json::parse(R"([{"event": "signup", "referrer": {"fixed_minor": 500}},
                                    {"event": "sale", "referrer": {"percent": 20},
                                     "recurring_months": 12}])")},
        {"hold_days", 0}};
    HttpResponse r = admin("POST", "/v1/programs", json::serialize(program));
    ASSERT_EQ(r.status, 201) << r.error << r.body;
    program_key_ = std::string(parse_json(r).at("program_key").as_string());
  }

  HttpResponse convert(const json::object& body) {
    return fetch(
        public_endpoint(), "POST", "/v1/conversions",
        {{"Authorization", "Bearer " + program_key_}, {"Content-Type", "application/json"}},
        json::serialize(body));
  }

  json::object get(std::string_view target) {
    HttpResponse r = admin("GET", target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.error << r.body;
    json::value v = parse_json(r);
    return v.is_object() ? v.as_object() : json::object{};
  }

  std::string program_key_;
};

TEST_F(ConversionFlowTest, ClickSignupSaleAndPartialRefund) {
  std::string ana = enrol("u_ana", "ana");
  ASSERT_FALSE(ana.empty());
  HttpResponse click = visit("/r/ana", kBrowserUa);
  ASSERT_EQ(click.status, 302) << click.error << click.body;
  std::string click_id = click_id_of(click);
  ASSERT_TRUE(looks_like_click_id(click_id)) << click_id;
  ASSERT_EQ(visit("/r/ana", kGooglebotUa).status, 302);

  HttpResponse signup = convert(
      {{"event_id", "su_1"}, {"type", "signup"}, {"click_id", click_id}, {"customer_id", "cus_1"}});
  ASSERT_EQ(signup.status, 201) << signup.error << signup.body;
  json::value su = parse_json(signup);
  EXPECT_EQ(su.at("attributed"), true);
  EXPECT_EQ(text(su.at("referrer_id")), ana);
  EXPECT_EQ(su.at("link_code"), "ana");
  EXPECT_EQ(text(su.at("click_id")), click_id);
  EXPECT_EQ(su.at("match"), "click_id");
  EXPECT_EQ(su.at("duplicate"), false);
  ASSERT_EQ(su.at("rewards").as_array().size(), 1u) << signup.body;
  EXPECT_EQ(su.at("rewards").at(0).at("amount_minor").as_int64(), 500);

  // The sale names no click: it follows the customer's binding made by the signup.
  HttpResponse sale = convert({{"event_id", "o_1"},
                               {"type", "sale"},
                               {"customer_id", "cus_1"},
                               {"amount_minor", 10000},
                               {"currency", "USD"}});
  ASSERT_EQ(sale.status, 201) << sale.error << sale.body;
  json::value so = parse_json(sale);
  EXPECT_EQ(text(so.at("referrer_id")), ana);
  EXPECT_EQ(so.at("match"), "customer_binding");
  EXPECT_EQ(text(so.at("click_id")), click_id);
  ASSERT_EQ(so.at("rewards").as_array().size(), 1u) << sale.body;
  EXPECT_EQ(so.at("rewards").at(0).at("amount_minor").as_int64(), 2000);

  HttpResponse refund = convert({{"event_id", "rf_1"},
                                 {"type", "refund"},
                                 {"refund_of", "o_1"},
                                 {"amount_minor", 2500},
                                 {"currency", "USD"}});
  ASSERT_EQ(refund.status, 201) << refund.error << refund.body;
  json::value ro = parse_json(refund);
  EXPECT_EQ(text(ro.at("referrer_id")), ana);
  EXPECT_EQ(ro.at("amount_minor").as_int64(), 2500);
  ASSERT_EQ(ro.at("rewards").as_array().size(), 1u) << refund.body;
  EXPECT_EQ(ro.at("rewards").at(0).at("amount_minor").as_int64(), -500);

  // A repeat of the sale is answered with its first body.
  HttpResponse again = convert({{"event_id", "o_1"},
                                {"type", "sale"},
                                {"customer_id", "cus_1"},
                                {"amount_minor", 99},
                                {"currency", "USD"}});
  ASSERT_EQ(again.status, 200) << again.body;
  json::object expected = so.as_object();
  expected["duplicate"] = true;
  EXPECT_EQ(parse_json(again), expected);
}

TEST_F(ConversionFlowTest, ExplainReportAndLedgerShowTheFunnel) {
  std::string ana = enrol("u_ana", "ana");
  ASSERT_FALSE(ana.empty());
  HttpResponse click = visit("/r/ana", kBrowserUa);
  ASSERT_EQ(click.status, 302) << click.error << click.body;
  std::string click_id = click_id_of(click);
  ASSERT_EQ(visit("/r/ana", kGooglebotUa).status, 302);
  ASSERT_EQ(convert({{"event_id", "su_1"},
                     {"type", "signup"},
                     {"click_id", click_id},
                     {"customer_id", "cus_1"}})
                .status,
            201);
  ASSERT_EQ(convert({{"event_id", "o_1"},
                     {"type", "sale"},
                     {"customer_id", "cus_1"},
                     {"amount_minor", 10000},
                     {"currency", "USD"}})
                .status,
            201);
  ASSERT_EQ(convert({{"event_id", "rf_1"},
                     {"type", "refund"},
                     {"refund_of", "o_1"},
                     {"amount_minor", 2500},
                     {"currency", "USD"}})
                .status,
            201);

  json::object su = get("/v1/conversions/su_1/explain");
  EXPECT_EQ(su.at("model"), "last_click");
  EXPECT_EQ(su.at("match"), "click_id");
  EXPECT_EQ(su.at("binding"), "created");
  const json::array& cands = su.at("candidates").as_array();
  ASSERT_EQ(cands.size(), 1u) << json::serialize(su);  // the bot is another visitor
  EXPECT_EQ(text(cands[0].at("click_id")), click_id);
  EXPECT_EQ(cands[0].at("winner"), true);
  EXPECT_EQ(cands[0].at("eligible"), true);
  EXPECT_EQ(su.at("followed").at("rewards").at(0).at("amount_minor").as_int64(), 500);

  json::object sale = get("/v1/conversions/o_1/explain?program=acme");
  EXPECT_EQ(sale.at("match"), "customer_binding");
  EXPECT_EQ(sale.at("rule").as_string().find("customer_binding"), 0u) << sale.at("rule");
  EXPECT_EQ(sale.at("followed").at("refunded_minor").as_int64(), 2500);
  EXPECT_EQ(sale.at("followed").at("rewards").at(0).at("amount_minor").as_int64(), 2000);

  json::object report = get("/v1/reports/referrers?program=acme");
  ASSERT_EQ(report.at("rows").as_array().size(), 1u) << json::serialize(report);
  const json::value& row = report.at("rows").at(0);
  EXPECT_EQ(text(row.at("referrer_id")), ana);
  EXPECT_EQ(row.at("clicks").to_number<std::int64_t>(), 2);
  EXPECT_EQ(row.at("unique_clicks").to_number<std::int64_t>(), 2);
  EXPECT_EQ(row.at("bot_clicks").to_number<std::int64_t>(), 1);
  EXPECT_EQ(row.at("signups").to_number<std::int64_t>(), 1);
  EXPECT_EQ(row.at("sales").to_number<std::int64_t>(), 1);
  EXPECT_EQ(row.at("revenue_minor").to_number<std::int64_t>(), 7500);
  EXPECT_EQ(row.at("refunded_minor").to_number<std::int64_t>(), 2500);
  EXPECT_EQ(row.at("rewards_minor").to_number<std::int64_t>(), 2000);
  EXPECT_DOUBLE_EQ(row.at("conversion_rate").to_number<double>(), 1.0);

  json::object ledger = get("/v1/referrers/" + ana + "/ledger");
  EXPECT_EQ(ledger.at("currency"), "USD");
  EXPECT_EQ(ledger.at("balance_minor").as_int64(), 2000);
  std::map<std::tuple<std::string, std::string>, std::int64_t> entries;
  for (const auto& e : ledger.at("entries").as_array()) {
    entries[{text(e.at("kind")), text(e.at("event_id"))}] += e.at("amount_minor").as_int64();
  }
  std::map<std::tuple<std::string, std::string>, std::int64_t> want{
      {{"referrer", "su_1"}, 500}, {{"referrer", "o_1"}, 2000}, {{"reversal", "rf_1"}, -500}};
  EXPECT_EQ(entries, want) << json::serialize(ledger);
}

// Two sales 01:30 EDT and 01:30 EST on New York's 25-hour day, through the HTTP report.
TEST_F(ConversionFlowTest, HourlyTimeseriesKeepsBothOneOClocksOfFallBackDay) {
  ASSERT_FALSE(enrol("u_ana", "ana").empty());
  for (auto [id, at] :
       {std::pair{"o_edt", "2026-11-01T05:30:00Z"}, std::pair{"o_est", "2026-11-01T06:30:00Z"}}) {
    HttpResponse r = convert({{"event_id", id},
                              {"type", "sale"},
                              {"amount_minor", 1000},
                              {"currency", "USD"},
                              {"occurred_at", at}});
    ASSERT_EQ(r.status, 201) << r.error << r.body;
  }
  json::object ts =
      get("/v1/reports/timeseries?program=acme&interval=hour&from=2026-11-01"
          "&to=2026-11-01&tz=America/New_York");
  const json::array& rows = ts.at("rows").as_array();
  ASSERT_EQ(rows.size(), 25u) << json::serialize(ts);
  EXPECT_EQ(rows[1].at("start"), "2026-11-01T01:00:00-04:00");
  EXPECT_EQ(rows[2].at("start"), "2026-11-01T01:00:00-05:00");
  EXPECT_EQ(rows[1].at("sales").to_number<std::int64_t>(), 1);
  EXPECT_EQ(rows[2].at("sales").to_number<std::int64_t>(), 1);
  EXPECT_EQ(rows[2].at("revenue_minor").to_number<std::int64_t>(), 1000);

  HttpResponse day = admin("GET",
                           "/v1/reports/timeseries?program=acme&interval=day"
                           "&from=2026-11-01&to=2026-11-01&tz=America/New_York");
  ASSERT_EQ(day.status, 200) << day.body;
  json::value day_body = parse_json(day);
  const json::array& days = day_body.at("rows").as_array();
  ASSERT_EQ(days.size(), 1u);
  EXPECT_EQ(days[0].at("sales").to_number<std::int64_t>(), 2);
  EXPECT_EQ(days[0].at("revenue_minor").to_number<std::int64_t>(), 2000);
}

TEST_F(ConversionFlowTest, BearerSchemeMatchesInAnyCase) {
  for (std::string scheme : {"bearer ", "BEARER ", "bEaReR "}) {
    HttpResponse a = fetch(admin_endpoint(), "GET", "/v1/programs",
                           {{"Authorization", scheme + std::string(kAdminKey)}}, "");
    EXPECT_EQ(a.status, 200) << scheme << a.error << a.body;
    json::object body{{"event_id", "signup_" + scheme}, {"type", "signup"}};
    HttpResponse c =
        fetch(public_endpoint(), "POST", "/v1/conversions",
              {{"Authorization", scheme + program_key_}, {"Content-Type", "application/json"}},
              json::serialize(body));
    EXPECT_EQ(c.status, 201) << scheme << c.error << c.body;
  }
  HttpResponse basic = fetch(admin_endpoint(), "GET", "/v1/programs",
                             {{"Authorization", "Basic " + std::string(kAdminKey)}}, "");
  EXPECT_EQ(basic.status, 401);
}

TEST_F(ConversionFlowTest, AmountAsStringAndEmptyTimeAreRefused) {
  HttpResponse text_amount = convert(json::object{
      {"event_id", "s1"}, {"type", "sale"}, {"amount_minor", "100"}, {"currency", "USD"}});
  EXPECT_EQ(text_amount.status, 400) << text_amount.body;
  EXPECT_EQ(text(parse_json(text_amount).at("error").at("code")), "invalid_amount");

  HttpResponse empty_time =
      convert(json::object{{"event_id", "s2"}, {"type", "signup"}, {"occurred_at", ""}});
  EXPECT_EQ(empty_time.status, 400) << empty_time.body;
  EXPECT_EQ(text(parse_json(empty_time).at("error").at("code")), "invalid_time");

  HttpResponse offset = convert(json::object{
      {"event_id", "s3"}, {"type", "signup"}, {"occurred_at", "2025-12-01T10:00:00+24:00"}});
  EXPECT_EQ(offset.status, 400) << offset.body;
  EXPECT_EQ(text(parse_json(offset).at("error").at("code")), "invalid_time");
}

TEST_F(ConversionFlowTest, PostbackTakesTheFirstOfRepeatedParameters) {
  HttpResponse wrong_first =
      visit("/postback?key=wrong&key=" + program_key_ + "&event_id=p1&type=signup");
  EXPECT_EQ(wrong_first.status, 401) << wrong_first.body;

  HttpResponse r = visit("/postback?key=" + program_key_ +
                         "&key=wrong&event_id=p2&event_id=p3&type=sale&amount_minor=250"
                         "&amount_minor=999&currency=USD");
  ASSERT_EQ(r.status, 201) << r.body;
  json::value v = parse_json(r);
  EXPECT_EQ(text(v.at("event_id")), "p2");
  EXPECT_EQ(v.at("amount_minor").to_number<std::int64_t>(), 250);

  HttpResponse bad = visit("/postback?key=" + program_key_ +
                           "&event_id=p4&type=sale&amount_minor=12x&currency=USD");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(text(parse_json(bad).at("error").at("code")), "invalid_amount");
}

}  // namespace
}  // namespace earnd::integration
