#include "earnd/attribution/conversions.h"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "earnd/attribution/matcher.h"
#include "earnd/common/click.h"
#include "earnd/common/click_id.h"
#include "earnd/common/money.h"
#include "earnd/common/time.h"
#include "earnd/links/catalog.h"
#include "earnd/rewards/ledger.h"
#include "earnd/store/store.h"

namespace earnd::attribution {
namespace {

namespace json = boost::json;

constexpr std::uint64_t kMs = 1;
constexpr std::uint64_t kHourMs = 3'600'000;
constexpr std::uint64_t kDayMs = 24 * kHourMs;
// 2025-01-15T00:00:00Z: the conversions of these tests happen at or after this time.
constexpr std::uint64_t kT0 = 1'736'899'200'000;
constexpr std::uint64_t kVisitor = 0x1234'5678'9abc'def1;
constexpr std::uint64_t kOtherVisitor = 0x0fed'cba9'8765'4321;

// A JSON string's text, or its serialization when it is no string (so that it compares unequal).
std::string text(const json::value& v) {
  return v.is_string() ? std::string(v.get_string()) : json::serialize(v);
}

struct Reply {
  unsigned status = 0;
  json::object body;
};

// A real store in a temporary directory with the catalog, the ledger and the conversion
// service wired as the server wires them (no webhooks). Program "acme" pays 500 per signup and
// 10% of a sale to the referrer; "ana" (u_ana) and "bob" (u_bob) are its referrers.
class ConversionServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "earnd_attribution_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    open();
  }

  void TearDown() override {
    close();
    std::filesystem::remove_all(dir_);
  }

  void open() {
    store_ = store::Store::open({.data_dir = dir_, .block_cache_mb = 8});
    catalog_ = std::make_unique<links::Catalog>(*store_, "https://go.example.com");
    ledger_ = std::make_unique<rewards::Ledger>(*store_, *catalog_);
    service_ = std::make_unique<ConversionService>(*store_, *catalog_, *ledger_, nullptr,
                                                   ConversionOptions{.sync = true});
  }

  void close() {
    service_.reset();
    ledger_.reset();
    catalog_.reset();
    store_.reset();
  }

  // Creates the program with these attribution settings and its two referrers.
  void make_program(std::string_view attribution = "{}", std::string_view rewards = R"([
                        {"event": "signup", "referrer": {"fixed_minor": 500}},
                        {"event": "sale", "referrer": {"percent": 10}, "recurring_months": 12}])") {
    json::object body{{"id", "acme"},
                      {"currency", "USD"},
                      {"allowed_hosts", json::array{"shop.example.com"}},
                      {"destination", "https://shop.example.com/"},
                      {"attribution", json::parse(attribution)},
                      {"rewards", json::parse(rewards)},
                      {"hold_days", 0}};
    links::AdminReply p = catalog_->create_program(body);
    ASSERT_EQ(p.status, 201u) << json::serialize(p.body);
    ana_ = enrol("u_ana", "ana");
    bob_ = enrol("u_bob", "bob");
  }

  std::string enrol(std::string_view external_id, std::string_view code) {
    links::AdminReply r = catalog_->create_referrer(
        "acme", json::object{{"external_id", external_id}, {"name", external_id}, {"code", code}});
    EXPECT_EQ(r.status, 201u) << json::serialize(r.body);
    return r.status == 201u ? std::string(r.body.at("id").as_string()) : "";
  }

  // Stores one click as the ingest writer does; returns it (with its click id).
  ClickRecord click(std::string_view referrer,
                    std::string_view code,
                    std::uint64_t ts_ms,
                    std::uint64_t visitor = kVisitor,
                    ClickReason reason = ClickReason::kHuman) {
    ClickRecord c;
    c.ts_ms = ts_ms;
    c.id = make_click_id(ts_ms, 0);
    c.visitor_hash = visitor;
    c.program = "acme";
    c.referrer_id = std::string(referrer);
    c.code = std::string(code);
    c.reason = reason;
    write({c});
    return c;
  }

  void write(const std::vector<ClickRecord>& clicks) {
    store::ClickBatch batch = store_->make_click_batch();
    for (const auto& c : clicks) {
      batch.add(c);
    }
    EXPECT_FALSE(store_->write_clicks(batch, false));
  }

  static json::object sale(std::string_view id,
                           std::uint64_t at_ms,
                           std::string_view customer,
                           std::string_view click_id = "",
                           std::int64_t amount = 10000) {
    json::object b{{"event_id", id},          {"type", "sale"},
                   {"customer_id", customer}, {"amount_minor", amount},
                   {"currency", "USD"},       {"occurred_at", format_rfc3339(at_ms)}};
    if (!click_id.empty()) {
      b["click_id"] = click_id;
    }
    return b;
  }

  // Processes the bodies as one batch, as the conversion thread does.
  std::vector<Reply> process(std::vector<json::object> bodies,
                             std::optional<std::uint64_t> visitor = std::nullopt) {
    std::vector<ConversionRequest> batch;
    for (auto& b : bodies) {
      batch.push_back({.program = "acme", .body = std::move(b), .visitor_hash = visitor});
    }
    std::vector<Reply> out;
    for (const auto& r : service_->process(batch)) {
      out.push_back({r.status, json::parse(r.body).as_object()});
    }
    return out;
  }

  Reply send(json::object body, std::optional<std::uint64_t> visitor = std::nullopt) {
    return process({std::move(body)}, visitor).front();
  }

  json::object explain(std::string_view event_id) {
    ConversionReply r = service_->explain(event_id, "");
    EXPECT_EQ(r.status, 200u) << r.body;
    return json::parse(r.body).as_object();
  }

  static std::string error_code(const Reply& r) {
    return std::string(r.body.at("error").at("code").as_string());
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<links::Catalog> catalog_;
  std::unique_ptr<rewards::Ledger> ledger_;
  std::unique_ptr<ConversionService> service_;
  std::string ana_;
  std::string bob_;
};

TEST_F(ConversionServiceTest, ExplicitClickIdWinsOverTheCustomerBinding) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  ClickRecord a = click(ana_, "ana", kT0 - kHourMs);
  ASSERT_EQ(text(send(sale("s1", kT0, "cus_1", a.id.to_string())).body.at("referrer_id")), ana_);

  ClickRecord b = click(bob_, "bob", kT0 + kDayMs - kHourMs, kOtherVisitor);
  Reply r = send(sale("s2", kT0 + kDayMs, "cus_1", b.id.to_string()));
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_EQ(r.body.at("attributed"), true);
  EXPECT_EQ(text(r.body.at("referrer_id")), bob_);
  EXPECT_EQ(text(r.body.at("link_code")), "bob");
  EXPECT_EQ(text(r.body.at("click_id")), b.id.to_string());
  EXPECT_EQ(r.body.at("match"), "click_id");
  EXPECT_EQ(r.body.at("duplicate"), false);
}

TEST_F(ConversionServiceTest, UnknownOrMalformedClickIdIsRejected) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  std::string never_stored = make_click_id(kT0 - kHourMs, 0).to_string();
  Reply unknown = send(sale("s1", kT0, "cus_1", never_stored));
  ASSERT_EQ(unknown.status, 400u) << json::serialize(unknown.body);
  EXPECT_EQ(error_code(unknown), "unknown_click");
  EXPECT_FALSE(unknown.body.at("error").at("message").as_string().empty());

  Reply garbage = send(sale("s2", kT0, "cus_1", "not-a-click-id"));
  ASSERT_EQ(garbage.status, 400u) << json::serialize(garbage.body);
  EXPECT_EQ(error_code(garbage), "invalid_click_id");

  // A click of another program is unknown to this one.
  json::object beta{{"id", "beta"},
                    {"currency", "USD"},
                    {"allowed_hosts", json::array{"shop.example.com"}},
                    {"destination", "https://shop.example.com/"}};
  ASSERT_EQ(catalog_->create_program(beta).status, 201u);
  ClickRecord foreign = click(ana_, "ana", kT0 - kHourMs);
  foreign.program = "beta";
  foreign.id = make_click_id(kT0 - kHourMs, 0);
  write({foreign});
  Reply other = send(sale("s3", kT0, "cus_1", foreign.id.to_string()));
  ASSERT_EQ(other.status, 400u) << json::serialize(other.body);
  EXPECT_EQ(error_code(other), "unknown_click");

  // Nothing was stored: the same event ids are still new.
  ClickRecord a = click(ana_, "ana", kT0 - kHourMs);
  EXPECT_EQ(send(sale("s1", kT0, "cus_1", a.id.to_string())).status, 201u);
}

TEST_F(ConversionServiceTest, FirstAttributedConversionBindsTheCustomerUntilBindingDays) {
  ASSERT_NO_FATAL_FAILURE(make_program(R"({"binding_days": 10})"));
  ClickRecord a = click(ana_, "ana", kT0 - kHourMs);
  Reply first = send(sale("s1", kT0, "cus_1", a.id.to_string()));
  ASSERT_EQ(first.status, 201u) << json::serialize(first.body);
  EXPECT_EQ(explain("s1").at("binding"), "created");

  Reply follows = send(sale("s2", kT0 + 10 * kDayMs, "cus_1"));
  ASSERT_EQ(follows.status, 201u) << json::serialize(follows.body);
  EXPECT_EQ(follows.body.at("attributed"), true);
  EXPECT_EQ(text(follows.body.at("referrer_id")), ana_);
  EXPECT_EQ(follows.body.at("match"), "customer_binding");
  EXPECT_EQ(text(follows.body.at("click_id")), a.id.to_string());
  ASSERT_EQ(follows.body.at("rewards").as_array().size(), 1u);
  EXPECT_EQ(follows.body.at("rewards").at(0).at("amount_minor").as_int64(), 1000);

  Reply other = send(sale("s3", kT0 + kDayMs, "cus_2"));
  EXPECT_EQ(other.body.at("attributed"), false);

  Reply ended = send(sale("s4", kT0 + 10 * kDayMs + kMs, "cus_1"));
  ASSERT_EQ(ended.status, 201u) << json::serialize(ended.body);
  EXPECT_EQ(ended.body.at("attributed"), false);
  EXPECT_EQ(ended.body.at("match"), "none");
  EXPECT_TRUE(ended.body.at("referrer_id").is_null());
  EXPECT_TRUE(ended.body.at("rewards").as_array().empty());
}

TEST_F(ConversionServiceTest, ProbabilisticMatchIsOffByDefault) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  click(ana_, "ana", kT0 - kHourMs);
  Reply r = send(sale("s1", kT0, "cus_1"), kVisitor);
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_EQ(r.body.at("attributed"), false);
  EXPECT_EQ(r.body.at("match"), "none");
}

TEST_F(ConversionServiceTest, ProbabilisticMatchUsesItsShorterWindowAndIsMarked) {
  ASSERT_NO_FATAL_FAILURE(make_program(R"({"probabilistic_hours": 24})"));
  ClickRecord edge = click(ana_, "ana", kT0 - 24 * kHourMs);
  click(bob_, "bob", kT0 - 24 * kHourMs - kMs, kOtherVisitor);

  Reply in = send(sale("s1", kT0, "cus_1"), kVisitor);
  ASSERT_EQ(in.status, 201u) << json::serialize(in.body);
  EXPECT_EQ(in.body.at("attributed"), true);
  EXPECT_EQ(text(in.body.at("referrer_id")), ana_);
  EXPECT_EQ(text(in.body.at("click_id")), edge.id.to_string());
  EXPECT_EQ(in.body.at("match"), "probabilistic");
  json::object e = explain("s1");
  EXPECT_EQ(e.at("match"), "probabilistic");
  EXPECT_EQ(e.at("rule").as_string().find("probabilistic"), 0u) << e.at("rule");

  // One millisecond past the probabilistic window, although well inside window_days.
  Reply out = send(sale("s2", kT0, "cus_2"), kOtherVisitor);
  EXPECT_EQ(out.body.at("attributed"), false);
  EXPECT_EQ(out.body.at("match"), "none");
}

TEST_F(ConversionServiceTest, ProbabilisticMatchRanksBelowDeterministicRules) {
  ASSERT_NO_FATAL_FAILURE(make_program(R"({"probabilistic_hours": 24})"));
  ClickRecord a = click(ana_, "ana", kT0 - 5 * kDayMs, kOtherVisitor);
  click(bob_, "bob", kT0 - kHourMs);  // newer, on the browser's own visitor hash

  Reply named = send(sale("s1", kT0, "cus_1", a.id.to_string()), kVisitor);
  ASSERT_EQ(named.status, 201u) << json::serialize(named.body);
  EXPECT_EQ(text(named.body.at("referrer_id")), ana_);
  EXPECT_EQ(named.body.at("match"), "click_id");

  Reply bound = send(sale("s2", kT0 + kMs, "cus_1"), kVisitor);
  EXPECT_EQ(text(bound.body.at("referrer_id")), ana_);
  EXPECT_EQ(bound.body.at("match"), "customer_binding");

  Reply guessed = send(sale("s3", kT0 + kMs, "cus_9"), kVisitor);
  EXPECT_EQ(text(guessed.body.at("referrer_id")), bob_);
  EXPECT_EQ(guessed.body.at("match"), "probabilistic");
}

TEST_F(ConversionServiceTest, LastClickTakesTheLatestHumanClick) {
  ASSERT_NO_FATAL_FAILURE(make_program(R"({"model": "last_click"})"));
  ClickRecord early = click(ana_, "ana", kT0 - 10 * kDayMs);
  ClickRecord late = click(bob_, "bob", kT0 - 2 * kDayMs);
  Reply r = send(sale("s1", kT0, "cus_1", early.id.to_string()));
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_EQ(text(r.body.at("referrer_id")), bob_);
  EXPECT_EQ(text(r.body.at("click_id")), late.id.to_string());
}

TEST_F(ConversionServiceTest, FirstClickTakesTheEarliestHumanClick) {
  ASSERT_NO_FATAL_FAILURE(make_program(R"({"model": "first_click"})"));
  ClickRecord early = click(ana_, "ana", kT0 - 10 * kDayMs);
  ClickRecord late = click(bob_, "bob", kT0 - 2 * kDayMs);
  Reply r = send(sale("s1", kT0, "cus_1", late.id.to_string()));
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_EQ(text(r.body.at("referrer_id")), ana_);
  EXPECT_EQ(text(r.body.at("click_id")), early.id.to_string());
  EXPECT_EQ(explain("s1").at("model"), "first_click");
}

TEST_F(ConversionServiceTest, ClickExactlyWindowDaysBeforeIsInOneMsMoreIsOut) {
  ASSERT_NO_FATAL_FAILURE(make_program(R"({"window_days": 30, "model": "first_click"})"));
  ClickRecord edge = click(ana_, "ana", kT0 - 30 * kDayMs);
  Reply in = send(sale("s1", kT0, "cus_1", edge.id.to_string()));
  ASSERT_EQ(in.status, 201u) << json::serialize(in.body);
  EXPECT_EQ(in.body.at("attributed"), true);
  EXPECT_EQ(text(in.body.at("click_id")), edge.id.to_string());

  ClickRecord past = click(bob_, "bob", kT0 - 30 * kDayMs - kMs, kOtherVisitor);
  Reply out = send(sale("s2", kT0, "cus_2", past.id.to_string()));
  ASSERT_EQ(out.status, 201u) << json::serialize(out.body);
  EXPECT_EQ(out.body.at("attributed"), false);
  EXPECT_TRUE(out.body.at("referrer_id").is_null());
  EXPECT_TRUE(explain("s2").at("candidates").as_array().empty());
}

// Two clicks of one visitor in the same millisecond: last_click takes the larger click id,
// first_click the smaller.
TEST_F(ConversionServiceTest, SameMillisecondTieIsBrokenByClickId) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  ClickRecord a = click(ana_, "ana", kT0 - kHourMs);
  ClickRecord b = click(bob_, "bob", kT0 - kHourMs);
  ASSERT_NE(a.id, b.id);
  const ClickRecord& larger = a.id > b.id ? a : b;
  const ClickRecord& smaller = a.id > b.id ? b : a;
  Reply last = send(sale("s1", kT0, "cus_1", smaller.id.to_string()));
  EXPECT_EQ(text(last.body.at("click_id")), larger.id.to_string());
  EXPECT_EQ(text(last.body.at("referrer_id")), larger.referrer_id);

  links::AdminReply p =
      catalog_->patch_program("acme", json::parse(R"({"attribution": {"model": "first_click"}})"));
  ASSERT_EQ(p.status, 200u) << json::serialize(p.body);
  Reply first = send(sale("s2", kT0, "cus_2", larger.id.to_string()));
  EXPECT_EQ(text(first.body.at("click_id")), smaller.id.to_string());
  EXPECT_EQ(text(first.body.at("referrer_id")), smaller.referrer_id);
}

TEST_F(ConversionServiceTest, BotPreviewAndVelocityClicksNeverWin) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  ClickRecord human = click(ana_, "ana", kT0 - 5 * kHourMs);
  click(bob_, "bob", kT0 - 3 * kHourMs, kVisitor, ClickReason::kBotUa);
  click(bob_, "bob", kT0 - 2 * kHourMs, kVisitor, ClickReason::kPreview);
  ClickRecord velocity = click(bob_, "bob", kT0 - kHourMs, kVisitor, ClickReason::kVelocity);
  Reply r = send(sale("s1", kT0, "cus_1", velocity.id.to_string()));
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_EQ(text(r.body.at("click_id")), human.id.to_string());
  EXPECT_EQ(text(r.body.at("referrer_id")), ana_);

  // Only non-human clicks: unattributed, every one listed as not eligible.
  ClickRecord bot = click(bob_, "bob", kT0 - kHourMs, kOtherVisitor, ClickReason::kBotUa);
  click(bob_, "bob", kT0 - kHourMs + 1, kOtherVisitor, ClickReason::kPreview);
  click(bob_, "bob", kT0 - kHourMs + 2, kOtherVisitor, ClickReason::kVelocity);
  Reply none = send(sale("s2", kT0, "cus_2", bot.id.to_string()));
  EXPECT_EQ(none.body.at("attributed"), false);
  json::array cands = explain("s2").at("candidates").as_array();
  ASSERT_EQ(cands.size(), 3u);
  EXPECT_EQ(cands.at(0).at("reason"), "bot_ua");
  EXPECT_EQ(cands.at(1).at("reason"), "preview");
  EXPECT_EQ(cands.at(2).at("reason"), "velocity");
  for (const auto& c : cands) {
    EXPECT_EQ(c.at("eligible"), false);
    EXPECT_EQ(c.at("winner"), false);
  }
}

TEST_F(ConversionServiceTest, SelfReferralIsRecordedFlaggedAndNotRewarded) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  ClickRecord a = click(ana_, "ana", kT0 - kHourMs);
  Reply r = send(sale("s1", kT0, "u_ana", a.id.to_string()));
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_EQ(r.body.at("attributed"), true);
  EXPECT_EQ(text(r.body.at("referrer_id")), ana_);
  EXPECT_EQ(r.body.at("self_referral"), true);
  EXPECT_TRUE(r.body.at("rewards").as_array().empty());
  EXPECT_EQ(ledger_->view(ana_).value().at("balance_minor").as_int64(), 0);
  EXPECT_EQ(explain("s1").at("self_referral").is_string(), true);

  // It did not bind the customer either.
  Reply later = send(sale("s2", kT0 + kDayMs, "u_ana"));
  EXPECT_EQ(later.body.at("attributed"), false);
}

TEST_F(ConversionServiceTest, RepeatEventIdAnswersTheFirstBodyAsDuplicate) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  ClickRecord a = click(ana_, "ana", kT0 - kHourMs);
  std::vector<Reply> same_batch =
      process({sale("s1", kT0, "cus_1", a.id.to_string()), sale("s1", kT0 + kMs, "cus_2", "", 1)});
  ASSERT_EQ(same_batch[0].status, 201u) << json::serialize(same_batch[0].body);
  ASSERT_EQ(same_batch[1].status, 200u) << json::serialize(same_batch[1].body);
  EXPECT_EQ(same_batch[1].body.at("duplicate"), true);
  json::object first = same_batch[0].body;
  first["duplicate"] = true;
  EXPECT_EQ(same_batch[1].body, first);

  Reply later = send(sale("s1", kT0 + kDayMs, "cus_3", "", 7));
  EXPECT_EQ(later.status, 200u);
  EXPECT_EQ(later.body, first);
  EXPECT_EQ(ledger_->view(ana_).value().at("balance_minor").as_int64(), 1000);
}

TEST_F(ConversionServiceTest, RepeatEventIdIsDuplicateAfterRestart) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  ClickRecord a = click(ana_, "ana", kT0 - kHourMs);
  Reply r = send(sale("s1", kT0, "cus_1", a.id.to_string()));
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);

  close();
  open();
  Reply again = send(sale("s1", kT0, "cus_1", a.id.to_string()));
  ASSERT_EQ(again.status, 200u) << json::serialize(again.body);
  json::object expected = r.body;
  expected["duplicate"] = true;
  EXPECT_EQ(again.body, expected);
  EXPECT_EQ(ledger_->view(ana_).value().at("balance_minor").as_int64(), 1000);
}

TEST_F(ConversionServiceTest, InvalidRequestsAnswerTheContractsErrors) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  json::object refund{{"event_id", "r1"},
                      {"type", "refund"},
                      {"refund_of", "nope"},
                      {"amount_minor", 100},
                      {"currency", "USD"}};
  Reply unknown = send(refund);
  ASSERT_EQ(unknown.status, 400u);
  EXPECT_EQ(error_code(unknown), "unknown_refund_of");

  json::object no_currency = sale("s1", kT0, "cus_1");
  no_currency.erase("currency");
  Reply missing = send(no_currency);
  ASSERT_EQ(missing.status, 400u);
  EXPECT_EQ(error_code(missing), "missing_currency");

  ClickRecord a = click(ana_, "ana", kT0 - kHourMs);
  ASSERT_EQ(send(sale("s0", kT0, "cus_1", a.id.to_string(), 3000)).status, 201u);
  refund["refund_of"] = "s0";
  refund["amount_minor"] = 3001;
  Reply too_much = send(refund);
  ASSERT_EQ(too_much.status, 400u);
  EXPECT_EQ(error_code(too_much), "refund_exceeds_sale");

  // The skew is 5 minutes: one minute ahead is accepted, ten are not.
  Reply future = send(sale("s2", now_ms() + 10 * 60'000, "cus_1"));
  ASSERT_EQ(future.status, 400u) << json::serialize(future.body);
  EXPECT_EQ(error_code(future), "time_in_future");
  EXPECT_EQ(send(sale("s3", now_ms() + 60'000, "cus_1")).status, 201u);
}

TEST_F(ConversionServiceTest, ExplainListsCandidatesRuleAndRewards) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  ClickRecord old = click(ana_, "ana", kT0 - 3 * kDayMs);
  ClickRecord bot = click(bob_, "bob", kT0 - 2 * kDayMs, kVisitor, ClickReason::kBotUa);
  ClickRecord win = click(bob_, "bob", kT0 - kDayMs);
  ASSERT_EQ(send(sale("s1", kT0, "cus_1", old.id.to_string(), 25000)).status, 201u);
  json::object refund{{"event_id", "r1"},  {"type", "refund"},
                      {"refund_of", "s1"}, {"amount_minor", 5000},
                      {"currency", "USD"}, {"occurred_at", format_rfc3339(kT0 + kDayMs)}};
  ASSERT_EQ(send(refund).status, 201u);

  json::object e = explain("s1");
  EXPECT_EQ(e.at("model"), "last_click");
  EXPECT_EQ(e.at("window_days").as_int64(), 30);
  EXPECT_EQ(e.at("match"), "click_id");
  EXPECT_EQ(e.at("rule").as_string().find("last_click"), 0u) << e.at("rule");
  EXPECT_EQ(e.at("binding"), "created");
  json::array cands = e.at("candidates").as_array();
  ASSERT_EQ(cands.size(), 3u) << json::serialize(e);
  const ClickRecord* order[] = {&old, &bot, &win};
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(text(cands[i].at("click_id")), order[i]->id.to_string());
    EXPECT_EQ(cands[i].at("winner"), order[i] == &win);
    EXPECT_EQ(cands[i].at("eligible"), order[i] != &bot);
  }
  const json::object& followed = e.at("followed").as_object();
  EXPECT_EQ(followed.at("refunded_minor").as_int64(), 5000);
  ASSERT_EQ(followed.at("rewards").as_array().size(), 1u);
  EXPECT_EQ(followed.at("rewards").at(0).at("amount_minor").as_int64(), 2500);
  EXPECT_EQ(ledger_->view(bob_).value().at("balance_minor").as_int64(), 2000);
}

TEST_F(ConversionServiceTest, TotalsStopAtTheBoundWithAmountOverflow) {
  ASSERT_NO_FATAL_FAILURE(make_program("{}", R"([
      {"event": "signup", "referrer": {"fixed_minor": 1000000000000000}},
      {"event": "sale", "referrer": {"percent": 100}}])"));
  ClickRecord a = click(ana_, "ana", kT0 - kHourMs);
  // kMaxTotalMinor / kMaxAmountMinor sales of the largest amount reach the bound exactly.
  std::vector<json::object> sales;
  for (int i = 0; i < 1000; ++i) {
    std::string n = std::to_string(i);
    sales.push_back(sale("s" + n, kT0, "cus_" + n, a.id.to_string(), kMaxAmountMinor));
  }
  for (const Reply& r : process(std::move(sales))) {
    ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  }

  // One more minor unit of sales, or of rewards, is refused, and leaves nothing behind.
  Reply over = send(sale("s_over", kT0, "cus_over", a.id.to_string(), 1));
  ASSERT_EQ(over.status, 400u) << json::serialize(over.body);
  EXPECT_EQ(error_code(over), "amount_overflow");
  json::object signup{{"event_id", "u_over"},
                      {"type", "signup"},
                      {"click_id", a.id.to_string()},
                      {"occurred_at", format_rfc3339(kT0)}};
  Reply signup_over = send(signup);
  ASSERT_EQ(signup_over.status, 400u) << json::serialize(signup_over.body);
  EXPECT_EQ(error_code(signup_over), "amount_overflow");
  EXPECT_EQ(service_->explain("s_over", "").status, 404u);

  std::optional<json::object> ledger = ledger_->view(ana_);
  ASSERT_TRUE(ledger.has_value());
  EXPECT_EQ(ledger->at("balance_minor").as_int64(), kMaxTotalMinor);
  EXPECT_EQ(ledger->at("approved_minor").as_int64(), kMaxTotalMinor);
  EXPECT_EQ(ledger->at("entries").as_array().size(), 1000u);

  // A refund adds nothing to the totals; the bound stays where it was.
  json::object refund{{"event_id", "r1"}, {"type", "refund"}, {"refund_of", "s0"}};
  ASSERT_EQ(send(refund).status, 201u);
  EXPECT_EQ(ledger_->view(ana_)->at("balance_minor").as_int64(), kMaxTotalMinor - kMaxAmountMinor);
  EXPECT_EQ(send(sale("s_after", kT0, "cus_after", a.id.to_string(), 1)).status, 400u);
}

TEST_F(ConversionServiceTest, AmountAboveTheMaximumIsInvalid) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  Reply r = send(sale("s1", kT0, "cus_1", "", kMaxAmountMinor + 1));
  ASSERT_EQ(r.status, 400u);
  EXPECT_EQ(error_code(r), "invalid_amount");
  json::object text_amount = sale("s2", kT0, "cus_1");
  text_amount["amount_minor"] = "100";
  Reply t = send(text_amount);
  ASSERT_EQ(t.status, 400u);
  EXPECT_EQ(error_code(t), "invalid_amount");
  json::object empty_time = sale("s3", kT0, "cus_1");
  empty_time["occurred_at"] = "";
  Reply e = send(empty_time);
  ASSERT_EQ(e.status, 400u);
  EXPECT_EQ(error_code(e), "invalid_time");
}

// A visitor with more clicks in the window than an explanation lists: the matcher lists the
// kMaxCandidates at the model's end (each read back from the clicks family), and the winner
// is still the right one and among them.
TEST_F(ConversionServiceTest, CandidatesOfAFloodingVisitorAreBoundedAtTheModelsEnd) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  std::vector<ClickRecord> clicks;
  for (std::uint64_t i = 0; i < kMaxCandidates + 50; ++i) {
    ClickRecord c;
    c.ts_ms = kT0 - kDayMs + i * 1000;
    c.id = make_click_id(c.ts_ms, 0);
    c.visitor_hash = kVisitor;
    c.program = "acme";
    c.referrer_id = i == 0 ? ana_ : bob_;
    c.code = i == 0 ? "ana" : "bob";
    clicks.push_back(c);
  }
  write(clicks);
  for (auto model : {Model::kLastClick, Model::kFirstClick}) {
    std::vector<Candidate> listed;
    auto m = match(*store_,
                   {.visitor_hash = kVisitor,
                    .at_ms = kT0,
                    .window_ms = 30 * kDayMs,
                    .model = model,
                    .program = "acme"},
                   &listed);
    ASSERT_TRUE(m && *m);
    const ClickRecord& want = model == Model::kLastClick ? clicks.back() : clicks.front();
    EXPECT_EQ((*m)->id, want.id);
    EXPECT_EQ((*m)->referrer_id, want.referrer_id);
    ASSERT_EQ(listed.size(), kMaxCandidates);
    std::size_t first = model == Model::kLastClick ? clicks.size() - kMaxCandidates : 0;
    for (std::size_t i = 0; i < listed.size(); ++i) {
      EXPECT_EQ(listed[i].id, clicks[first + i].id) << i;
      EXPECT_EQ(listed[i].code, clicks[first + i].code) << i;
    }
  }
}

// The winner is listed even when more recent clicks fill the listed window, and the list says
// it was cut.
TEST_F(ConversionServiceTest, TheWinnerIsListedWhenLaterBotClicksFillTheCandidates) {
  ASSERT_NO_FATAL_FAILURE(make_program());
  ClickRecord human = click(ana_, "ana", kT0 - kDayMs);
  std::vector<ClickRecord> bots;
  for (std::uint64_t i = 1; i <= kMaxCandidates + 50; ++i) {
    ClickRecord c;
    c.ts_ms = kT0 - kDayMs + i;
    c.id = make_click_id(c.ts_ms, 0);
    c.visitor_hash = kVisitor;
    c.program = "acme";
    c.referrer_id = bob_;
    c.code = "bob";
    c.reason = ClickReason::kBotUa;
    bots.push_back(c);
  }
  write(bots);
  std::vector<Candidate> listed;
  bool cut = false;
  auto m = match(*store_,
                 {.visitor_hash = kVisitor,
                  .at_ms = kT0,
                  .window_ms = 30 * kDayMs,
                  .model = Model::kLastClick,
                  .program = "acme"},
                 &listed, &cut);
  ASSERT_TRUE(m && *m);
  EXPECT_EQ((*m)->id, human.id);
  EXPECT_TRUE(cut);
  ASSERT_EQ(listed.size(), kMaxCandidates);
  EXPECT_EQ(listed.front().id, human.id);  // the winner, then the 99 latest bot clicks
  EXPECT_EQ(listed[1].id, bots[bots.size() - (kMaxCandidates - 1)].id);
  EXPECT_EQ(listed.back().id, bots.back().id);

  Reply r = send(sale("s1", kT0, "cus_1", human.id.to_string()));
  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  json::object e = explain("s1");
  EXPECT_EQ(e.at("candidates").as_array().size(), kMaxCandidates);
  EXPECT_EQ(e.at("candidates_cut"), true);
  std::size_t winners = 0;
  for (const auto& c : e.at("candidates").as_array()) {
    winners += c.at("winner").as_bool() ? 1 : 0;
  }
  EXPECT_EQ(winners, 1u);
}

}  // namespace
}  // namespace earnd::attribution
