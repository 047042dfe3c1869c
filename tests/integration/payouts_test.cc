// Payouts over real HTTP: the due balances and preview of GET /v1/payouts/due against what
// POST /v1/payouts then creates, with rewards earned through real clicks and conversions.

#include <cstdint>
#include <map>
#include <string>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "server_fixture.h"

namespace earnd::integration {
namespace {

namespace json = boost::json;

// A 20% sale commission, no hold, and a payout minimum of 10.00.
constexpr std::int64_t kMinimumMinor = 1000;

class PayoutsApiTest : public EarndTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(start_server());
    json::object program{
        {"id", kProgramId},
        {"currency", "USD"},
        {"destination", kDestination},
        {"allowed_hosts", json::array{"shop.example.com"}},
        {"rewards", json::parse(R"([{"event": "sale", "referrer": {"percent": 20}}])")},
        {"hold_days", 0},
        {"payout_minimum_minor", kMinimumMinor}};
    HttpResponse r = admin("POST", "/v1/programs", json::serialize(program));
    ASSERT_EQ(r.status, 201) << r.error << r.body;
    program_key_ = std::string(parse_json(r).at("program_key").as_string());
  }

  // A click on code by a visitor of its own, then a sale of amount_minor naming that click.
  void sell(std::string_view code, std::string_view event_id, std::int64_t amount_minor) {
    std::string ua = std::string(kBrowserUa) + " visitor/" + std::string(event_id);
    HttpResponse click = visit("/r/" + std::string(code), ua);
    ASSERT_EQ(click.status, 302) << click.error << click.body;
    json::object sale{
        {"event_id", event_id},           {"type", "sale"},
        {"click_id", click_id_of(click)}, {"customer_id", "cus_" + std::string(event_id)},
        {"amount_minor", amount_minor},   {"currency", "USD"}};
    HttpResponse r =
        fetch(public_endpoint(), "POST", "/v1/conversions",
              {{"Authorization", "Bearer " + program_key_}, {"Content-Type", "application/json"}},
              json::serialize(sale));
    ASSERT_EQ(r.status, 201) << r.error << r.body;
  }

  json::object due() {
    HttpResponse r = admin("GET", "/v1/payouts/due?program=acme");
    EXPECT_EQ(r.status, 200) << r.error << r.body;
    EXPECT_EQ(r.header("Content-Type").value_or(""), "application/json");
    json::value v = parse_json(r);
    return v.is_object() ? v.as_object() : json::object{};
  }

  // The due rows by referrer id.
  static std::map<std::string, json::object> rows_of(const json::object& due) {
    std::map<std::string, json::object> out;
    for (const auto& row : due.at("due").as_array()) {
      out[std::string(row.at("referrer_id").as_string())] = row.as_object();
    }
    return out;
  }

  std::string program_key_;
};

TEST_F(PayoutsApiTest, DueListEqualsThePayoutsThenCreated) {
  std::string ana = enrol("u_ana", "ana");
  std::string bob = enrol("u_bob", "bob");
  std::string cleo = enrol("u_cleo", "cleo");
  enrol("u_dan", "dan");                                   // earns nothing: not listed
  ASSERT_NO_FATAL_FAILURE(sell("ana", "o_ana1", 4990));    // 998
  ASSERT_NO_FATAL_FAILURE(sell("ana", "o_ana2", 1000));    // + 200
  ASSERT_NO_FATAL_FAILURE(sell("bob", "o_bob1", 12000));   // 2400
  ASSERT_NO_FATAL_FAILURE(sell("cleo", "o_cleo1", 2500));  // 500, below the minimum

  json::object before = due();
  EXPECT_EQ(before.at("program"), "acme");
  EXPECT_EQ(before.at("currency"), "USD");
  EXPECT_EQ(before.at("minimum_minor").as_int64(), kMinimumMinor);
  auto rows = rows_of(before);
  ASSERT_EQ(rows.size(), 3u) << json::serialize(before);
  EXPECT_EQ(rows[ana].at("approved_minor").as_int64(), 1198);
  EXPECT_EQ(rows[ana].at("external_id"), "u_ana");
  EXPECT_EQ(rows[ana].at("code"), "ana");
  EXPECT_EQ(rows[ana].at("eligible"), true);
  EXPECT_EQ(rows[bob].at("approved_minor").as_int64(), 2400);
  EXPECT_EQ(rows[bob].at("balance_minor").as_int64(), 2400);
  EXPECT_EQ(rows[bob].at("eligible"), true);
  EXPECT_EQ(rows[cleo].at("approved_minor").as_int64(), 500);
  EXPECT_EQ(rows[cleo].at("pending_minor").as_int64(), 0);
  EXPECT_EQ(rows[cleo].at("eligible"), false);
  EXPECT_EQ(before.at("total_minor").as_int64(), 1198 + 2400);

  // The preview created nothing; the payouts then created are its eligible rows.
  HttpResponse none = admin("GET", "/v1/payouts?program=acme");
  ASSERT_EQ(none.status, 200) << none.body;
  EXPECT_TRUE(parse_json(none).at("payouts").as_array().empty());
  HttpResponse made = admin("POST", "/v1/payouts", R"({"program": "acme"})");
  ASSERT_EQ(made.status, 200) << made.error << made.body;
  std::map<std::string, std::int64_t> created;
  json::value made_body = parse_json(made);
  for (const auto& p : made_body.at("payouts").as_array()) {
    created[std::string(p.at("referrer_id").as_string())] = p.at("amount_minor").as_int64();
  }
  std::map<std::string, std::int64_t> previewed{{ana, 1198}, {bob, 2400}};
  EXPECT_EQ(created, previewed);

  // Those referrers are no longer due; the one below the minimum still is, and not eligible.
  json::object after = due();
  auto left = rows_of(after);
  ASSERT_EQ(left.size(), 1u) << json::serialize(after);
  EXPECT_EQ(left.count(cleo), 1u);
  EXPECT_EQ(left[cleo].at("eligible"), false);
  EXPECT_EQ(after.at("total_minor").as_int64(), 0);
}

TEST_F(PayoutsApiTest, DueOfUnknownProgramIsNotFound) {
  HttpResponse r = admin("GET", "/v1/payouts/due?program=nope");
  ASSERT_EQ(r.status, 404) << r.error << r.body;
  EXPECT_EQ(r.header("Content-Type").value_or(""), "application/json");
  EXPECT_EQ(parse_json(r).at("error").at("code"), "not_found");
}

TEST_F(PayoutsApiTest, DueWithoutProgramIsBadRequest) {
  for (std::string_view target : {"/v1/payouts/due", "/v1/payouts/due?program="}) {
    HttpResponse r = admin("GET", target);
    ASSERT_EQ(r.status, 400) << target << ": " << r.error << r.body;
    EXPECT_EQ(parse_json(r).at("error").at("code"), "missing_field");
  }
}

TEST_F(PayoutsApiTest, DueNeedsTheAdminKey) {
  HttpResponse r = admin("GET", "/v1/payouts/due?program=acme", {}, "");
  EXPECT_EQ(r.status, 401) << r.error << r.body;
}

// Every list answers 400 with a JSON error for a page or per_page that is not a whole number
// from 1 up, and clamps per_page to the configured maximum (web.max_per_page, 500 by default).
TEST_F(PayoutsApiTest, ListsRefuseBadPagingAndClampPerPage) {
  std::string ana = enrol("u_ana", "ana");
  ASSERT_FALSE(ana.empty());
  for (std::string list : {"/v1/referrers?program=acme&", "/v1/conversions?program=acme&",
                           "/v1/payouts?program=acme&", "/v1/webhooks/deliveries?"}) {
    for (auto [query, code] : {std::pair{"page=-1", "invalid_page"},
                               {"page=0", "invalid_page"},
                               {"page=1x", "invalid_page"},
                               {"page=99999999999999999999999", "invalid_page"},
                               {"per_page=abc", "invalid_per_page"},
                               {"per_page=0", "invalid_per_page"},
                               {"per_page=-5", "invalid_per_page"}}) {
      HttpResponse r = admin("GET", list + query);
      EXPECT_EQ(r.status, 400) << list << query << ": " << r.body;
      json::value v = parse_json(r);
      EXPECT_EQ(v.is_object() ? json::serialize(v.at("error").at("code")) : "",
                "\"" + std::string(code) + "\"")
          << list << query;
    }
    HttpResponse ok = admin("GET", list + "page=2&per_page=7");
    ASSERT_EQ(ok.status, 200) << list << ok.body;
    EXPECT_EQ(parse_json(ok).at("page").to_number<std::int64_t>(), 2) << list;
    EXPECT_EQ(parse_json(ok).at("per_page").to_number<std::int64_t>(), 7) << list;
  }
  // A filter value the list does not know is an error, not an empty list.
  for (std::string query : {"type=bogus", "type=SALE", "attributed=maybe"}) {
    HttpResponse r = admin("GET", "/v1/conversions?program=acme&" + query);
    EXPECT_EQ(r.status, 400) << query << ": " << r.body;
    EXPECT_NE(r.body.find("invalid_field"), std::string::npos) << query << ": " << r.body;
  }
  EXPECT_EQ(admin("GET", "/v1/conversions?program=acme&type=sale").status, 200);
  HttpResponse clamped = admin("GET", "/v1/referrers?program=acme&per_page=100000");
  ASSERT_EQ(clamped.status, 200) << clamped.body;
  EXPECT_EQ(parse_json(clamped).at("per_page").to_number<std::int64_t>(), 500);

  // The portal's lists, signed in as Ana through a one-time link.
  HttpResponse link = admin("POST", "/v1/referrers/" + ana + "/portal-link", "{}");
  ASSERT_EQ(link.status, 201) << link.body;
  std::string url(parse_json(link).at("url").as_string());
  std::string token = url.substr(url.rfind('/') + 1);
  HttpResponse signin = fetch(
      public_endpoint(), "POST", "/portal/signin",
      {{"Origin", "http://earnd.test"}, {"Content-Type", "application/x-www-form-urlencoded"}},
      "token=" + token);
  ASSERT_EQ(signin.status, 303) << signin.body;
  std::string cookie = signin.header("Set-Cookie").value_or("");
  cookie = cookie.substr(0, cookie.find(';'));
  for (std::string list : {"/portal/api/me/payouts?", "/portal/api/me/conversions?"}) {
    HttpResponse bad = fetch(public_endpoint(), "GET", list + "page=-1", {{"Cookie", cookie}}, "");
    EXPECT_EQ(bad.status, 400) << list << bad.body;
    HttpResponse zero =
        fetch(public_endpoint(), "GET", list + "per_page=0", {{"Cookie", cookie}}, "");
    EXPECT_EQ(zero.status, 400) << list << zero.body;
    HttpResponse ok = fetch(public_endpoint(), "GET", list + "page=3", {{"Cookie", cookie}}, "");
    ASSERT_EQ(ok.status, 200) << list << ok.body;
    EXPECT_EQ(parse_json(ok).at("page").to_number<std::int64_t>(), 3) << list;
  }
}

}  // namespace
}  // namespace earnd::integration
