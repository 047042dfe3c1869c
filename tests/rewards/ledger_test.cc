#include "earnd/rewards/ledger.h"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
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
#include "earnd/store/store.h"

namespace earnd::rewards {
namespace {

namespace json = boost::json;

constexpr std::uint64_t kHourMs = 3'600'000;
constexpr std::uint64_t kDayMs = 24 * kHourMs;
// 2025-01-15T00:00:00Z: conversions happen from here on, clicks an hour before.
constexpr std::uint64_t kT0 = 1'736'899'200'000;

struct Reply {
  unsigned status = 0;
  json::object body;
};

// A real store in a temporary directory, a catalog, the ledger and the conversion service
// that drives it (without webhooks), as the server wires them.
class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "earnd_ledger_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    store_ = store::Store::open({.data_dir = dir_, .block_cache_mb = 8});
    catalog_ = std::make_unique<links::Catalog>(*store_, "https://go.example.com");
    ledger_ = std::make_unique<Ledger>(*store_, *catalog_);
    service_ = std::make_unique<attribution::ConversionService>(
        *store_, *catalog_, *ledger_, nullptr, attribution::ConversionOptions{.sync = false});
  }

  void TearDown() override {
    service_.reset();
    ledger_.reset();
    catalog_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Creates program "acme" (USD) with these reward rules and one referrer, "ana".
  void make_program(std::string_view rules, int hold_days = 0, std::int64_t minimum = 0) {
    json::object body{{"id", "acme"},
                      {"currency", "USD"},
                      {"allowed_hosts", json::array{"shop.example.com"}},
                      {"destination", "https://shop.example.com/"},
                      {"rewards", json::parse(rules)},
                      {"hold_days", hold_days},
                      {"payout_minimum_minor", minimum}};
    links::AdminReply p = catalog_->create_program(body);
    ASSERT_EQ(p.status, 201u) << json::serialize(p.body);
    links::AdminReply r = catalog_->create_referrer(
        "acme", json::object{{"external_id", "u_ana"}, {"name", "Ana"}, {"code", "ana"}});
    ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
    ana_ = std::string(r.body.at("id").as_string());
  }

  // Enrols another referrer of "acme" with one link; returns its id.
  std::string enrol(std::string_view external_id, std::string_view code) {
    links::AdminReply r = catalog_->create_referrer(
        "acme", json::object{{"external_id", external_id}, {"name", external_id}, {"code", code}});
    EXPECT_EQ(r.status, 201u) << json::serialize(r.body);
    return r.status == 201u ? std::string(r.body.at("id").as_string()) : "";
  }

  // Stores a human click on ana's link by the visitor of customer, an hour before at_ms.
  std::string click(std::string_view customer, std::uint64_t at_ms = kT0) {
    return click_on(ana_, "ana", customer, at_ms);
  }

  // The same on another referrer's link.
  std::string click_on(std::string_view referrer,
                       std::string_view code,
                       std::string_view customer,
                       std::uint64_t at_ms) {
    ClickRecord c;
    c.ts_ms = at_ms - kHourMs;
    c.id = make_click_id(c.ts_ms, 0);
    c.visitor_hash = std::hash<std::string_view>{}(customer) | 1;
    c.program = "acme";
    c.referrer_id = std::string(referrer);
    c.code = std::string(code);
    store::ClickBatch batch = store_->make_click_batch();
    batch.add(c);
    EXPECT_FALSE(store_->write_clicks(batch, false));
    return c.id.to_string();
  }

  static json::object event(std::string_view id, std::string_view type, std::uint64_t at_ms) {
    return json::object{{"event_id", id}, {"type", type}, {"occurred_at", format_rfc3339(at_ms)}};
  }

  static json::object sale_body(std::string_view id,
                                std::int64_t amount,
                                std::uint64_t at_ms,
                                std::string_view customer,
                                std::string_view click_id = "") {
    json::object b = event(id, "sale", at_ms);
    b["amount_minor"] = amount;
    b["currency"] = "USD";
    b["customer_id"] = customer;
    if (!click_id.empty()) {
      b["click_id"] = click_id;
    }
    return b;
  }

  // Processes the bodies as one batch, as the conversion thread does.
  std::vector<Reply> process(std::vector<json::object> bodies) {
    std::vector<attribution::ConversionRequest> batch;
    for (auto& b : bodies) {
      attribution::ConversionRequest req;
      req.program = "acme";
      req.body = std::move(b);
      batch.push_back(std::move(req));
    }
    std::vector<Reply> out;
    for (const auto& r : service_->process(batch)) {
      out.push_back({r.status, json::parse(r.body).as_object()});
    }
    return out;
  }

  Reply send(json::object body) { return process({std::move(body)}).front(); }

  // A sale by customer; the first one of a customer names a fresh click, later ones rely on
  // the customer's binding.
  Reply sale(std::string_view id,
             std::int64_t amount,
             std::uint64_t at_ms,
             std::string_view customer = "c_1",
             bool with_click = true) {
    std::string click_id = with_click ? click(customer, at_ms) : "";
    return send(sale_body(id, amount, at_ms, customer, click_id));
  }

  Reply refund(std::string_view id, std::string_view of, std::int64_t amount, std::uint64_t at_ms) {
    json::object b = event(id, "refund", at_ms);
    b["refund_of"] = of;
    b["amount_minor"] = amount;
    b["currency"] = "USD";
    return send(std::move(b));
  }

  // The referrer amounts of the reward or reversal entries in a conversion's answer.
  static std::vector<std::int64_t> amounts(const Reply& r) {
    std::vector<std::int64_t> out;
    for (const auto& e : r.body.at("rewards").as_array()) {
      if (e.at("kind") != "referee") {
        out.push_back(e.at("amount_minor").as_int64());
      }
    }
    return out;
  }

  json::object view() const { return ledger_->view(ana_).value(); }

  std::int64_t field(std::string_view key) const { return view().at(key).as_int64(); }

  // Ana's entries exactly as stored, read past the ledger's own code.
  std::vector<json::object> stored_entries() const {
    std::vector<json::object> out;
    std::string prefix = "le/" + ana_;
    prefix.push_back('\0');
    store_->scan_docs(prefix, [&](std::string_view, std::string_view v) {
      out.push_back(json::parse(v).as_object());
      return true;
    });
    return out;
  }

  // POST /v1/payouts: the open payouts afterwards.
  json::array create_payouts() {
    auto [status, body] = service_->create_payouts("acme");
    EXPECT_EQ(status, 200u) << body;
    return json::parse(body).at("payouts").as_array();
  }

  // GET /v1/payouts/due?program=acme.
  json::object due() const { return ledger_->due_payouts("acme").value(); }

  // The row of referrer in a due list; an empty object when it is not listed.
  static json::object due_row(const json::object& due, std::string_view referrer) {
    for (const auto& row : due.at("due").as_array()) {
      if (row.at("referrer_id").as_string() == referrer) {
        return row.as_object();
      }
    }
    return {};
  }

  void mark_paid(std::string_view payout_id) {
    auto [status, body] = service_->mark_paid(payout_id);
    ASSERT_EQ(status, 200u) << body;
    EXPECT_EQ(json::parse(body).at("status"), "paid");
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<links::Catalog> catalog_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<attribution::ConversionService> service_;
  std::string ana_;
};

constexpr std::string_view kTwentyPercent =
    R"([{"event": "sale", "referrer": {"percent": 20}, "recurring_months": 12}])";
constexpr std::string_view kFiftyPercent =
    R"([{"event": "sale", "referrer": {"percent": 50}, "recurring_months": 12}])";

TEST_F(LedgerTest, SaleRewardIsApprovedAtOnceWithoutHold) {
  make_program(kTwentyPercent);
  Reply r = sale("o1", 4990, kT0);
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_TRUE(r.body.at("attributed").as_bool());
  EXPECT_EQ(json::value_to<std::string>(r.body.at("referrer_id")), ana_);
  ASSERT_EQ(r.body.at("rewards").as_array().size(), 1u);
  const json::object& e = r.body.at("rewards").as_array()[0].as_object();
  EXPECT_EQ(e.at("amount_minor").as_int64(), 998);
  EXPECT_EQ(e.at("state"), "approved");
  EXPECT_EQ(e.at("kind"), "referrer");
  EXPECT_EQ(e.at("event_id"), "o1");
  EXPECT_FALSE(e.contains("approve_at_ms"));
  json::object v = view();
  EXPECT_EQ(v.at("balance_minor").as_int64(), 998);
  EXPECT_EQ(v.at("approved_minor").as_int64(), 998);
  EXPECT_EQ(v.at("pending_minor").as_int64(), 0);
  EXPECT_EQ(v.at("currency"), "USD");
  EXPECT_EQ(v.at("entries").as_array().size(), 1u);
}

TEST_F(LedgerTest, HeldRewardIsApprovedWhenTheHoldEnds) {
  make_program(kTwentyPercent, /*hold_days=*/30);
  ASSERT_EQ(amounts(sale("o1", 4990, kT0)), std::vector<std::int64_t>{998});
  EXPECT_EQ(field("pending_minor"), 998);
  EXPECT_EQ(field("balance_minor"), 998);
  EXPECT_EQ(service_->approve_due(kT0 + 30 * kDayMs - 1), 0u);
  EXPECT_EQ(field("pending_minor"), 998);
  EXPECT_EQ(service_->approve_due(kT0 + 30 * kDayMs), 1u);
  EXPECT_EQ(field("pending_minor"), 0);
  EXPECT_EQ(field("approved_minor"), 998);
  EXPECT_EQ(field("balance_minor"), 998);
  EXPECT_EQ(service_->approve_due(kT0 + 60 * kDayMs), 0u);
}

TEST_F(LedgerTest, SignupPaysTheReferrerAndRecordsTheReferee) {
  make_program(R"([{"event": "signup", "referrer": {"fixed_minor": 500},
                    "referee": {"fixed_minor": 300}}])");
  json::object body = event("s1", "signup", kT0);
  body["customer_id"] = "c_1";
  body["click_id"] = click("c_1");
  Reply r = send(std::move(body));
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  const json::array& rewards = r.body.at("rewards").as_array();
  ASSERT_EQ(rewards.size(), 2u);
  EXPECT_EQ(rewards[0].at("kind"), "referrer");
  EXPECT_EQ(rewards[0].at("amount_minor").as_int64(), 500);
  EXPECT_EQ(rewards[1].at("kind"), "referee");
  EXPECT_EQ(rewards[1].at("amount_minor").as_int64(), 300);
  EXPECT_EQ(rewards[1].at("customer_id"), "c_1");
  EXPECT_EQ(field("balance_minor"), 500);  // the referee's reward is not the referrer's money
}

TEST_F(LedgerTest, PartialRefundReversesItsShareHalfToEven) {
  make_program(kTwentyPercent);
  ASSERT_EQ(amounts(sale("o1", 1000, kT0)), std::vector<std::int64_t>{200});
  Reply r = refund("r1", "o1", 333, kT0 + kHourMs);  // 66.6 of 200
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  ASSERT_EQ(amounts(r), std::vector<std::int64_t>{-67});
  const json::object& e = r.body.at("rewards").as_array()[0].as_object();
  EXPECT_EQ(e.at("kind"), "reversal");
  EXPECT_EQ(e.at("event_id"), "r1");
  EXPECT_EQ(field("balance_minor"), 133);
  EXPECT_EQ(field("reversed_minor"), -67);
  Reply half = refund("r2", "o1", 167, kT0 + 2 * kHourMs);  // 500 of 1000 refunded: 100
  EXPECT_EQ(amounts(half), std::vector<std::int64_t>{-33});
  EXPECT_EQ(field("balance_minor"), 100);
}

TEST_F(LedgerTest, TwoPartialRefundsReverseExactlyTheWholeReward) {
  make_program(kFiftyPercent);
  ASSERT_EQ(amounts(sale("o1", 10, kT0)), std::vector<std::int64_t>{5});
  // Each half alone is 2.5 of the reward, which rounds to 2; the second reversal makes up the
  // difference so that nothing of the reward is left.
  EXPECT_EQ(amounts(refund("r1", "o1", 5, kT0 + kHourMs)), std::vector<std::int64_t>{-2});
  EXPECT_EQ(amounts(refund("r2", "o1", 5, kT0 + 2 * kHourMs)), std::vector<std::int64_t>{-3});
  EXPECT_EQ(field("balance_minor"), 0);
  EXPECT_EQ(field("reversed_minor"), -5);
  Reply more = refund("r3", "o1", 1, kT0 + 3 * kHourMs);
  EXPECT_EQ(more.status, 400u);
  EXPECT_EQ(more.body.at("error").at("code"), "refund_exceeds_sale");
}

TEST_F(LedgerTest, UnevenPartialRefundsDoNotDrift) {
  make_program(kFiftyPercent);
  ASSERT_EQ(amounts(sale("o1", 10, kT0)), std::vector<std::int64_t>{5});
  // 3, 3 and 4 of 10: 1.5 -> 2, then 3 of 5 in all (1 more), then the rest (2 more). Rounding
  // each refund alone would give 2 + 2 + 2 = 6, more than the reward.
  EXPECT_EQ(amounts(refund("r1", "o1", 3, kT0 + kHourMs)), std::vector<std::int64_t>{-2});
  EXPECT_EQ(amounts(refund("r2", "o1", 3, kT0 + 2 * kHourMs)), std::vector<std::int64_t>{-1});
  EXPECT_EQ(amounts(refund("r3", "o1", 4, kT0 + 3 * kHourMs)), std::vector<std::int64_t>{-2});
  EXPECT_EQ(field("balance_minor"), 0);
  EXPECT_EQ(field("reversed_minor"), -5);
}

TEST_F(LedgerTest, RefundWithoutAmountReversesTheRemainder) {
  make_program(R"([{"event": "sale", "referrer": {"percent": 20, "max_minor": 100}}])");
  ASSERT_EQ(amounts(sale("o1", 1000, kT0)), std::vector<std::int64_t>{100});  // capped
  EXPECT_EQ(amounts(refund("r1", "o1", 250, kT0 + kHourMs)), std::vector<std::int64_t>{-25});
  json::object rest = event("r2", "refund", kT0 + 2 * kHourMs);
  rest["refund_of"] = "o1";
  Reply r = send(std::move(rest));
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_EQ(r.body.at("amount_minor").as_int64(), 750);
  EXPECT_EQ(amounts(r), std::vector<std::int64_t>{-75});
  EXPECT_EQ(field("balance_minor"), 0);
}

TEST_F(LedgerTest, UnattributedSaleEarnsAndReversesNothing) {
  make_program(kTwentyPercent);
  Reply s = sale("o1", 1000, kT0, "c_9", /*with_click=*/false);
  ASSERT_EQ(s.status, 201u) << json::serialize(s.body);
  EXPECT_FALSE(s.body.at("attributed").as_bool());
  EXPECT_TRUE(s.body.at("rewards").as_array().empty());
  Reply r = refund("r1", "o1", 1000, kT0 + kHourMs);
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_TRUE(r.body.at("rewards").as_array().empty());
  EXPECT_TRUE(stored_entries().empty());
}

TEST_F(LedgerTest, SelfReferralEarnsNothing) {
  make_program(kTwentyPercent);
  Reply r = sale("o1", 1000, kT0, "u_ana");  // ana's own external id
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_TRUE(r.body.at("attributed").as_bool());
  EXPECT_TRUE(r.body.at("self_referral").as_bool());
  EXPECT_TRUE(r.body.at("rewards").as_array().empty());
  EXPECT_EQ(field("balance_minor"), 0);
}

TEST_F(LedgerTest, RecurringSalesEarnUntilTheMonthsAreOver) {
  make_program(R"([{"event": "sale", "referrer": {"percent": 10}, "recurring_months": 3}])");
  ASSERT_EQ(amounts(sale("o1", 1000, kT0)), std::vector<std::int64_t>{100});  // 2025-01-15
  // Later sales name no click: the customer's binding attributes them.
  Reply later = sale("o2", 2000, kT0 + 89 * kDayMs, "c_1", false);  // 2025-04-14: 2 months
  ASSERT_EQ(later.status, 201u) << json::serialize(later.body);
  EXPECT_EQ(later.body.at("match"), "customer_binding");
  EXPECT_EQ(amounts(later), std::vector<std::int64_t>{200});
  Reply at_end = sale("o3", 3000, kT0 + 90 * kDayMs, "c_1", false);  // 2025-04-15: 3 months
  ASSERT_EQ(at_end.status, 201u) << json::serialize(at_end.body);
  EXPECT_TRUE(at_end.body.at("attributed").as_bool());
  EXPECT_TRUE(amounts(at_end).empty());
  EXPECT_EQ(field("balance_minor"), 300);
}

TEST_F(LedgerTest, WithoutRecurringMonthsOnlyTheFirstSaleEarns) {
  make_program(R"([{"event": "sale", "referrer": {"percent": 10}}])");
  ASSERT_EQ(amounts(sale("o1", 1000, kT0)), std::vector<std::int64_t>{100});
  Reply second = sale("o2", 5000, kT0 + kHourMs, "c_1", false);
  ASSERT_EQ(second.status, 201u) << json::serialize(second.body);
  EXPECT_TRUE(second.body.at("attributed").as_bool());
  EXPECT_TRUE(amounts(second).empty());
  // Another customer's first sale still earns.
  EXPECT_EQ(amounts(sale("o3", 700, kT0 + 2 * kHourMs, "c_2")), std::vector<std::int64_t>{70});
  EXPECT_EQ(field("balance_minor"), 170);
}

constexpr std::string_view kTierAtThree = R"([{"event": "sale", "referrer": {"percent": 10},
  "recurring_months": 12, "tiers": [{"min_conversions": 3, "referrer": {"percent": 30}}]}])";

TEST_F(LedgerTest, TierAppliesFromTheConversionThatReachesIt) {
  make_program(kTierAtThree);
  EXPECT_EQ(amounts(sale("o1", 1000, kT0, "c_1")), std::vector<std::int64_t>{100});
  EXPECT_EQ(amounts(sale("o2", 1000, kT0 + kHourMs, "c_2")), std::vector<std::int64_t>{100});
  EXPECT_EQ(amounts(sale("o3", 1000, kT0 + 2 * kHourMs, "c_3")), std::vector<std::int64_t>{300});
  EXPECT_EQ(amounts(sale("o4", 1000, kT0 + 3 * kHourMs, "c_4")), std::vector<std::int64_t>{300});
  // Past the 30-day period the count starts again.
  EXPECT_EQ(amounts(sale("o5", 1000, kT0 + 40 * kDayMs, "c_5")), std::vector<std::int64_t>{100});
}

// Disabled while Ledger::reward counts the tier period from stored counters only: the earlier
// conversions of the batch being processed are not stored yet, so they are missed. Enable it
// with that fix.
TEST_F(LedgerTest, TierCountsEarlierConversionsOfTheSameBatch) {
  make_program(kTierAtThree);
  std::vector<json::object> bodies;
  for (int i = 1; i <= 3; ++i) {
    std::string customer = "c_" + std::to_string(i);
    std::uint64_t at = kT0 + i * 60'000;
    bodies.push_back(sale_body("o" + std::to_string(i), 1000, at, customer, click(customer, at)));
  }
  std::vector<Reply> replies = process(std::move(bodies));
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(amounts(replies[0]), std::vector<std::int64_t>{100});
  EXPECT_EQ(amounts(replies[1]), std::vector<std::int64_t>{100});
  // The third conversion of the period reaches the tier whether or not the server happened to
  // batch the three together.
  EXPECT_EQ(amounts(replies[2]), std::vector<std::int64_t>{300});
}

TEST_F(LedgerTest, RefundInTheSameBatchAsItsSale) {
  make_program(kTwentyPercent);
  std::string click_id = click("c_1");
  json::object r = event("r1", "refund", kT0 + 1);
  r["refund_of"] = "o1";
  r["amount_minor"] = 500;
  r["currency"] = "USD";
  std::vector<Reply> replies = process({sale_body("o1", 1000, kT0, "c_1", click_id), r});
  ASSERT_EQ(replies[1].status, 201u) << json::serialize(replies[1].body);
  EXPECT_EQ(amounts(replies[0]), std::vector<std::int64_t>{200});
  EXPECT_EQ(amounts(replies[1]), std::vector<std::int64_t>{-100});
  EXPECT_EQ(field("balance_minor"), 100);
}

TEST_F(LedgerTest, PayoutGathersApprovedAmountsOnce) {
  make_program(kTwentyPercent);
  ASSERT_EQ(amounts(sale("o1", 4990, kT0)), std::vector<std::int64_t>{998});
  ASSERT_EQ(amounts(sale("o2", 1000, kT0 + kHourMs, "c_2")), std::vector<std::int64_t>{200});
  json::array payouts = create_payouts();
  ASSERT_EQ(payouts.size(), 1u);
  const json::object& p = payouts[0].as_object();
  EXPECT_EQ(json::value_to<std::string>(p.at("referrer_id")), ana_);
  EXPECT_EQ(p.at("amount_minor").as_int64(), 1198);
  EXPECT_EQ(p.at("currency"), "USD");
  EXPECT_EQ(p.at("status"), "created");
  EXPECT_EQ(create_payouts().size(), 1u);  // nothing gathered twice
  std::string id(p.at("id").as_string());
  std::string csv = ledger_->payout_csv(id).value();
  EXPECT_EQ(csv,
            "payout_id,program,referrer_id,external_id,name,amount_minor,currency,entries,"
            "status,created_at\n" +
                id + ",acme," + ana_ + ",u_ana,Ana,1198,USD,2,created," +
                std::string(p.at("created_at").as_string()) + "\n");
  EXPECT_EQ(field("balance_minor"), 1198);  // owed until paid
  mark_paid(id);
  EXPECT_EQ(field("balance_minor"), 0);
  EXPECT_EQ(field("paid_minor"), 1198);
  EXPECT_TRUE(create_payouts().empty());
  EXPECT_FALSE(ledger_->payout_csv("po_missing").has_value());
}

TEST_F(LedgerTest, PendingRewardsAreNotPaidOut) {
  make_program(kTwentyPercent, /*hold_days=*/14);
  ASSERT_EQ(amounts(sale("o1", 1000, kT0)), std::vector<std::int64_t>{200});
  EXPECT_TRUE(create_payouts().empty());
  EXPECT_EQ(service_->approve_due(kT0 + 14 * kDayMs), 1u);
  json::array payouts = create_payouts();
  ASSERT_EQ(payouts.size(), 1u);
  EXPECT_EQ(payouts[0].at("amount_minor").as_int64(), 200);
}

TEST_F(LedgerTest, RefundAfterPaidPayoutLeavesNegativeBalance) {
  make_program(kTwentyPercent, 0, /*minimum=*/500);
  ASSERT_EQ(amounts(sale("o1", 5000, kT0)), std::vector<std::int64_t>{1000});
  json::array first = create_payouts();
  ASSERT_EQ(first.size(), 1u);
  mark_paid(first[0].at("id").as_string());
  ASSERT_EQ(field("balance_minor"), 0);
  EXPECT_EQ(amounts(refund("r1", "o1", 5000, kT0 + kHourMs)), std::vector<std::int64_t>{-1000});
  json::object v = view();
  EXPECT_EQ(v.at("balance_minor").as_int64(), -1000);
  EXPECT_EQ(v.at("paid_minor").as_int64(), 1000);
  EXPECT_EQ(v.at("reversed_minor").as_int64(), -1000);
  EXPECT_TRUE(create_payouts().empty());  // nothing is owed
}

TEST_F(LedgerTest, LaterRewardsPayOffNegativeBalanceBeforeThePayout) {
  make_program(kTwentyPercent, 0, /*minimum=*/500);
  ASSERT_EQ(amounts(sale("o1", 5000, kT0)), std::vector<std::int64_t>{1000});
  mark_paid(create_payouts().at(0).at("id").as_string());
  ASSERT_EQ(amounts(refund("r1", "o1", 5000, kT0 + kHourMs)), std::vector<std::int64_t>{-1000});
  ASSERT_EQ(amounts(sale("o2", 3000, kT0 + 2 * kHourMs, "c_2")), std::vector<std::int64_t>{600});
  EXPECT_EQ(field("balance_minor"), -400);
  EXPECT_TRUE(create_payouts().empty());
  ASSERT_EQ(amounts(sale("o3", 4000, kT0 + 3 * kHourMs, "c_3")), std::vector<std::int64_t>{800});
  EXPECT_EQ(field("balance_minor"), 400);
  EXPECT_TRUE(create_payouts().empty());  // 400 is below the minimum of 500
  ASSERT_EQ(amounts(sale("o4", 500, kT0 + 4 * kHourMs, "c_4")), std::vector<std::int64_t>{100});
  EXPECT_EQ(field("balance_minor"), 500);
  json::array payouts = create_payouts();
  ASSERT_EQ(payouts.size(), 1u);
  EXPECT_EQ(payouts[0].at("amount_minor").as_int64(), 500);
  EXPECT_EQ(payouts[0].at("entries").as_array().size(), 4u);  // the reversal and 3 rewards
  mark_paid(payouts[0].at("id").as_string());
  json::object v = view();
  EXPECT_EQ(v.at("balance_minor").as_int64(), 0);
  EXPECT_EQ(v.at("paid_minor").as_int64(), 1000 - 1000 + 600 + 800 + 100);
}

TEST_F(LedgerTest, DuePreviewEqualsThePayoutsThenCreated) {
  make_program(kTwentyPercent, 0, /*minimum=*/500);
  std::string bob = enrol("u_bob", "bob");
  ASSERT_EQ(amounts(sale("o1", 4990, kT0)), std::vector<std::int64_t>{998});
  ASSERT_EQ(amounts(sale("o2", 1000, kT0 + kHourMs, "c_2")), std::vector<std::int64_t>{200});
  std::string bob_click = click_on(bob, "bob", "c_3", kT0 + 2 * kHourMs);
  ASSERT_EQ(amounts(send(sale_body("o3", 2000, kT0 + 2 * kHourMs, "c_3", bob_click))),
            std::vector<std::int64_t>{400});

  json::object before = due();
  EXPECT_EQ(before.at("program"), "acme");
  EXPECT_EQ(before.at("currency"), "USD");
  EXPECT_EQ(before.at("minimum_minor").as_int64(), 500);
  ASSERT_EQ(before.at("due").as_array().size(), 2u);
  json::object ana = due_row(before, ana_);
  EXPECT_EQ(ana.at("external_id"), "u_ana");
  EXPECT_EQ(ana.at("code"), "ana");
  EXPECT_EQ(ana.at("approved_minor").as_int64(), 1198);
  EXPECT_EQ(ana.at("pending_minor").as_int64(), 0);
  EXPECT_EQ(ana.at("balance_minor").as_int64(), 1198);
  EXPECT_EQ(ana.at("eligible"), true);
  json::object below = due_row(before, bob);
  EXPECT_EQ(below.at("approved_minor").as_int64(), 400);  // under the minimum of 500
  EXPECT_EQ(below.at("eligible"), false);
  EXPECT_EQ(before.at("total_minor").as_int64(), 1198);

  // The preview wrote nothing: the payout then created is the eligible row, amount for amount.
  json::array payouts = create_payouts();
  ASSERT_EQ(payouts.size(), 1u);
  EXPECT_EQ(payouts[0].at("referrer_id").as_string(), ana_);
  EXPECT_EQ(payouts[0].at("amount_minor").as_int64(), ana.at("approved_minor").as_int64());

  json::object after = due();
  ASSERT_EQ(after.at("due").as_array().size(), 1u);
  EXPECT_TRUE(due_row(after, ana_).empty());
  EXPECT_EQ(due_row(after, bob).at("approved_minor").as_int64(), 400);
  EXPECT_EQ(after.at("total_minor").as_int64(), 0);
}

TEST_F(LedgerTest, DueShowsHeldRewardsAsPendingUntilApproved) {
  make_program(kTwentyPercent, /*hold_days=*/14);
  ASSERT_EQ(amounts(sale("o1", 1000, kT0)), std::vector<std::int64_t>{200});
  json::object held = due_row(due(), ana_);
  EXPECT_EQ(held.at("approved_minor").as_int64(), 0);
  EXPECT_EQ(held.at("pending_minor").as_int64(), 200);
  EXPECT_EQ(held.at("balance_minor").as_int64(), 200);
  EXPECT_EQ(held.at("eligible"), false);
  EXPECT_EQ(due().at("total_minor").as_int64(), 0);
  EXPECT_TRUE(create_payouts().empty());

  ASSERT_EQ(service_->approve_due(kT0 + 14 * kDayMs), 1u);
  json::object approved = due_row(due(), ana_);
  EXPECT_EQ(approved.at("approved_minor").as_int64(), 200);
  EXPECT_EQ(approved.at("pending_minor").as_int64(), 0);
  EXPECT_EQ(approved.at("eligible"), true);
  EXPECT_EQ(due().at("total_minor").as_int64(), 200);
}

TEST_F(LedgerTest, DueNetsRefundsAfterPayoutAsThePayoutWould) {
  make_program(kTwentyPercent, 0, /*minimum=*/500);
  ASSERT_EQ(amounts(sale("o1", 5000, kT0)), std::vector<std::int64_t>{1000});
  mark_paid(create_payouts().at(0).at("id").as_string());
  EXPECT_TRUE(due().at("due").as_array().empty());  // paid: nothing owed
  ASSERT_EQ(amounts(refund("r1", "o1", 5000, kT0 + kHourMs)), std::vector<std::int64_t>{-1000});
  ASSERT_EQ(amounts(sale("o2", 3000, kT0 + 2 * kHourMs, "c_2")), std::vector<std::int64_t>{600});

  json::object row = due_row(due(), ana_);
  EXPECT_EQ(row.at("approved_minor").as_int64(), -400);
  EXPECT_EQ(row.at("balance_minor").as_int64(), -400);
  EXPECT_EQ(row.at("eligible"), false);
  EXPECT_TRUE(create_payouts().empty());

  ASSERT_EQ(amounts(sale("o3", 5000, kT0 + 3 * kHourMs, "c_3")), std::vector<std::int64_t>{1000});
  EXPECT_EQ(due_row(due(), ana_).at("approved_minor").as_int64(), 600);
  EXPECT_EQ(due().at("total_minor").as_int64(), 600);
  json::array payouts = create_payouts();
  ASSERT_EQ(payouts.size(), 1u);
  EXPECT_EQ(payouts[0].at("amount_minor").as_int64(), 600);
}

TEST_F(LedgerTest, DueOfUnknownProgramIsEmpty) {
  make_program(kTwentyPercent);
  EXPECT_FALSE(ledger_->due_payouts("nope").has_value());
  EXPECT_TRUE(due().at("due").as_array().empty());  // ana has earned nothing yet
  EXPECT_EQ(due().at("total_minor").as_int64(), 0);
}

TEST_F(LedgerTest, SummaryOfStoredEntriesEqualsTheView) {
  make_program(kTwentyPercent, /*hold_days=*/10);
  ASSERT_EQ(amounts(sale("o1", 5000, kT0)), std::vector<std::int64_t>{1000});
  ASSERT_EQ(service_->approve_due(kT0 + 10 * kDayMs), 1u);
  mark_paid(create_payouts().at(0).at("id").as_string());
  ASSERT_EQ(amounts(sale("o2", 2000, kT0 + 20 * kDayMs, "c_2")), std::vector<std::int64_t>{400});
  ASSERT_EQ(amounts(sale("o3", 1500, kT0 + 21 * kDayMs, "c_3")), std::vector<std::int64_t>{300});
  ASSERT_EQ(service_->approve_due(kT0 + 30 * kDayMs), 1u);  // o2 only
  ASSERT_EQ(amounts(refund("r1", "o1", 1250, kT0 + 31 * kDayMs)), std::vector<std::int64_t>{-250});
  ASSERT_EQ(amounts(refund("r3", "o3", 500, kT0 + 31 * kDayMs)), std::vector<std::int64_t>{-100});
  std::vector<json::object> entries = stored_entries();
  ASSERT_EQ(entries.size(), 5u);
  Balance b = summarize(entries);
  EXPECT_EQ(b.pending_minor, 300 - 100);
  EXPECT_EQ(b.approved_minor, 400 - 250);
  EXPECT_EQ(b.paid_minor, 1000);
  EXPECT_EQ(b.reversed_minor, -350);
  EXPECT_EQ(b.balance_minor, 350);
  // The same sum by hand: every entry's amount minus what was paid.
  std::int64_t all = 0;
  for (const auto& e : entries) {
    all += e.at("amount_minor").as_int64();
  }
  EXPECT_EQ(all - b.paid_minor, b.balance_minor);
  json::object v = view();
  EXPECT_EQ(v.at("balance_minor").as_int64(), b.balance_minor);
  EXPECT_EQ(v.at("pending_minor").as_int64(), b.pending_minor);
  EXPECT_EQ(v.at("approved_minor").as_int64(), b.approved_minor);
  EXPECT_EQ(v.at("paid_minor").as_int64(), b.paid_minor);
  EXPECT_EQ(v.at("reversed_minor").as_int64(), b.reversed_minor);
}

TEST_F(LedgerTest, ViewOfUnknownReferrerIsEmpty) {
  make_program(kTwentyPercent);
  EXPECT_FALSE(ledger_->view("rf_missing").has_value());
  EXPECT_EQ(field("balance_minor"), 0);
  EXPECT_TRUE(view().at("entries").as_array().empty());
}

TEST_F(LedgerTest, SummaryHoldsSumsOutOfRangeAtTheEnds) {
  // Entries the bounds would never let in (damaged or written before them): the sums stop at
  // INT64_MAX / INT64_MIN instead of overflowing.
  constexpr std::int64_t kHuge = 5'000'000'000'000'000'000;
  std::vector<json::object> entries;
  for (const char* id : {"a", "b"}) {
    entries.push_back(json::object{
        {"id", id}, {"kind", "referrer"}, {"state", "approved"}, {"amount_minor", kHuge}});
  }
  entries.push_back(json::object{
      {"id", "c"}, {"kind", "referrer"}, {"state", "pending"}, {"amount_minor", kHuge}});
  Balance b = summarize(entries);
  EXPECT_EQ(b.approved_minor, std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(b.pending_minor, kHuge);
  EXPECT_EQ(b.balance_minor, std::numeric_limits<std::int64_t>::max());
}

}  // namespace
}  // namespace earnd::rewards
