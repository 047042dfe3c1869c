#include "earnd/rewards/rules.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace earnd::rewards {
namespace {

namespace json = boost::json;

json::value rules(std::string_view text) {
  return json::parse(text);
}

// The outcome of one sale of amount under rules, as the customer's first sale.
RewardOutcome sale(const json::value& r, std::int64_t amount) {
  return compute(r, {.event = "sale", .amount_minor = amount});
}

// The outcome of a later sale, months whole months after the customer's first one.
RewardOutcome repeat_sale(const json::value& r, std::int64_t amount, std::uint32_t months) {
  return compute(r, {.event = "sale",
                     .amount_minor = amount,
                     .first_sale = false,
                     .months_since_first_sale = months});
}

// The message validate_rules gives for the rules text, or "" when they are valid.
std::string problem(std::string_view text) {
  return validate_rules(rules(text)).value_or("");
}

TEST(PercentOfTest, RoundsHalfToEvenOnMinorUnits) {
  EXPECT_EQ(percent_of(25, 1000), 2);  // 2.5 -> 2
  EXPECT_EQ(percent_of(35, 1000), 4);  // 3.5 -> 4
  EXPECT_EQ(percent_of(45, 1000), 4);  // 4.5 -> 4
  EXPECT_EQ(percent_of(4, 1250), 0);   // 12.5% of 4 = 0.5 -> 0
  EXPECT_EQ(percent_of(12, 1250), 2);  // 12.5% of 12 = 1.5 -> 2
  EXPECT_EQ(percent_of(20, 1250), 2);  // 2.5 -> 2
  EXPECT_EQ(percent_of(28, 1250), 4);  // 3.5 -> 4
}

TEST(PercentOfTest, IsExactAwayFromHalves) {
  EXPECT_EQ(percent_of(4990, 2000), 998);
  EXPECT_EQ(percent_of(4999, 2000), 1000);  // 999.8
  EXPECT_EQ(percent_of(4991, 2000), 998);   // 998.2
  EXPECT_EQ(percent_of(0, 2000), 0);
  EXPECT_EQ(percent_of(12345, 0), 0);
  EXPECT_EQ(percent_of(12345, 10000), 12345);
}

TEST(ShareOfTest, RoundsHalfToEven) {
  EXPECT_EQ(share_of(5, 1, 2), 2);  // 2.5
  EXPECT_EQ(share_of(7, 1, 2), 4);  // 3.5
  EXPECT_EQ(share_of(100, 1, 3), 33);
  EXPECT_EQ(share_of(100, 2, 3), 67);
  EXPECT_EQ(share_of(998, 0, 4990), 0);
  EXPECT_EQ(share_of(998, 4990, 4990), 998);
}

TEST(ShareOfTest, DoesNotOverflowOnLargeAmounts) {
  constexpr std::int64_t kBig = std::numeric_limits<std::int64_t>::max() / 2;
  EXPECT_EQ(share_of(kBig, kBig - 1, kBig), kBig - 1);
  EXPECT_EQ(share_of(1'000'000'000'000'000, 1'000'000'000'000'000, 3'000'000'000'000'000),
            333'333'333'333'333);
  EXPECT_EQ(percent_of(1'000'000'000'000'000, 2000), 200'000'000'000'000);
}

TEST(ComputeTest, FixedSignupRewardsBothSides) {
  auto r = rules(R"([{"event": "signup", "referrer": {"fixed_minor": 500},
                      "referee": {"fixed_minor": 300}}])");
  RewardOutcome out = compute(r, {.event = "signup"});
  EXPECT_EQ(out.rule_index, 0);
  EXPECT_EQ(out.referrer_minor, 500);
  EXPECT_EQ(out.referee_minor, 300);
  EXPECT_EQ(out.explanation, "rule 0 (signup): a fixed 500 minor units");
}

TEST(ComputeTest, FixedSaleRewardIgnoresTheAmount) {
  auto r = rules(R"([{"event": "sale", "referrer": {"fixed_minor": 250}}])");
  EXPECT_EQ(sale(r, 1).referrer_minor, 250);
  EXPECT_EQ(sale(r, 1'000'000).referrer_minor, 250);
  EXPECT_EQ(sale(r, 1'000'000).referee_minor, 0);
}

TEST(ComputeTest, PercentOfTheSale) {
  auto r = rules(R"([{"event": "signup", "referrer": {"fixed_minor": 500}},
                     {"event": "sale", "referrer": {"percent": 20}}])");
  RewardOutcome out = sale(r, 4990);
  EXPECT_EQ(out.rule_index, 1);
  EXPECT_EQ(out.referrer_minor, 998);
  EXPECT_EQ(out.explanation, "rule 1 (sale): 20% of the amount, rounded half to even");
}

TEST(ComputeTest, FractionalPercentRoundsHalfToEven) {
  auto r = rules(R"([{"event": "sale", "referrer": {"percent": 12.5}}])");
  EXPECT_EQ(sale(r, 4).referrer_minor, 0);     // 0.5
  EXPECT_EQ(sale(r, 12).referrer_minor, 2);    // 1.5
  EXPECT_EQ(sale(r, 20).referrer_minor, 2);    // 2.5
  EXPECT_EQ(sale(r, 28).referrer_minor, 4);    // 3.5
  EXPECT_EQ(sale(r, 100).referrer_minor, 12);  // 12.5
  auto two_decimals = rules(R"([{"event": "sale", "referrer": {"percent": 2.55}}])");
  EXPECT_EQ(sale(two_decimals, 10000).referrer_minor, 255);
  EXPECT_EQ(sale(two_decimals, 100).referrer_minor, 3);  // 2.55
}

TEST(ComputeTest, MaxCapsThePercent) {
  auto r = rules(R"([{"event": "sale", "referrer": {"percent": 20, "max_minor": 10000}}])");
  EXPECT_EQ(sale(r, 49'995).referrer_minor, 9999);
  EXPECT_EQ(sale(r, 50'000).referrer_minor, 10000);
  EXPECT_EQ(sale(r, 50'005).referrer_minor, 10000);
  EXPECT_EQ(sale(r, 10'000'000).referrer_minor, 10000);
  EXPECT_EQ(sale(r, 10'000'000).explanation,
            "rule 0 (sale): 20% of the amount, rounded half to even, at most 10000");
}

TEST(ComputeTest, MinFloorsThePercent) {
  auto r = rules(R"([{"event": "sale", "referrer": {"percent": 5, "min_minor": 100,
                                                    "max_minor": 1000}}])");
  EXPECT_EQ(sale(r, 1000).referrer_minor, 100);  // 50 raised to the floor
  EXPECT_EQ(sale(r, 2000).referrer_minor, 100);
  EXPECT_EQ(sale(r, 2010).referrer_minor, 100);  // 100.5 -> 100
  EXPECT_EQ(sale(r, 2030).referrer_minor, 102);  // 101.5 -> 102
  EXPECT_EQ(sale(r, 100'000).referrer_minor, 1000);
}

TEST(ComputeTest, MinAmountExcludesSmallSales) {
  auto r = rules(R"([{"event": "sale", "referrer": {"percent": 10}, "min_amount_minor": 1000}])");
  RewardOutcome small = sale(r, 999);
  EXPECT_EQ(small.rule_index, -1);
  EXPECT_EQ(small.referrer_minor, 0);
  EXPECT_EQ(small.explanation, "the sale is below the rule's min_amount_minor");
  EXPECT_EQ(sale(r, 1000).referrer_minor, 100);
}

TEST(ComputeTest, NoRuleForTheEvent) {
  auto r = rules(R"([{"event": "sale", "referrer": {"percent": 10}}])");
  RewardOutcome out = compute(r, {.event = "signup"});
  EXPECT_EQ(out.rule_index, -1);
  EXPECT_EQ(out.referrer_minor, 0);
  EXPECT_EQ(out.explanation, "no rule for signup");
  EXPECT_EQ(compute(json::array(), {.event = "sale", .amount_minor = 100}).rule_index, -1);
}

TEST(ComputeTest, FirstRuleForTheEventWins) {
  auto r = rules(R"([{"event": "sale", "referrer": {"fixed_minor": 100}},
                     {"event": "sale", "referrer": {"fixed_minor": 900}}])");
  RewardOutcome out = sale(r, 5000);
  EXPECT_EQ(out.rule_index, 0);
  EXPECT_EQ(out.referrer_minor, 100);
}

TEST(ComputeTest, RefereeOnlyRuleGivesTheReferrerNothing) {
  auto r = rules(R"([{"event": "signup", "referee": {"fixed_minor": 700}}])");
  RewardOutcome out = compute(r, {.event = "signup"});
  EXPECT_EQ(out.rule_index, 0);
  EXPECT_EQ(out.referrer_minor, 0);
  EXPECT_EQ(out.referee_minor, 700);
  EXPECT_EQ(out.explanation, "rule 0 (signup): no referrer reward");
}

constexpr std::string_view kTiered = R"([{"event": "sale", "referrer": {"percent": 20},
  "tiers": [{"min_conversions": 10, "referrer": {"percent": 25, "max_minor": 15000}},
            {"min_conversions": 20, "referrer": {"fixed_minor": 4000}}]}])";

TEST(ComputeTest, TierAppliesOnceMinConversionsIsReached) {
  auto r = rules(kTiered);
  RewardContext ctx{.event = "sale", .amount_minor = 10'000};
  ctx.conversions_in_period = 9;
  RewardOutcome short_of_tier = compute(r, ctx);
  EXPECT_EQ(short_of_tier.referrer_minor, 2000);
  EXPECT_FALSE(short_of_tier.rule.as_object().contains("tier"));
  ctx.conversions_in_period = 10;
  RewardOutcome tier = compute(r, ctx);
  EXPECT_EQ(tier.referrer_minor, 2500);
  EXPECT_EQ(tier.rule.at("tier").as_int64(), 10);
  EXPECT_EQ(json::serialize(tier.rule.at("referrer")), R"({"percent":25,"max_minor":15000})");
}

TEST(ComputeTest, HighestReachedTierWins) {
  auto r = rules(kTiered);
  RewardContext ctx{.event = "sale", .amount_minor = 100'000};
  ctx.conversions_in_period = 19;
  EXPECT_EQ(compute(r, ctx).referrer_minor, 15000);  // 25% capped
  ctx.conversions_in_period = 20;
  EXPECT_EQ(compute(r, ctx).referrer_minor, 4000);
  ctx.conversions_in_period = 500;
  EXPECT_EQ(compute(r, ctx).rule.at("tier").as_int64(), 20);
}

TEST(ComputeTest, TierPeriodDefaultsToThirtyDays) {
  EXPECT_EQ(tier_period_days(rules(kTiered), "sale"), 30u);
  EXPECT_EQ(tier_period_days(rules(kTiered), "signup"), 0u);
  auto weekly = rules(R"([{"event": "signup", "referrer": {"fixed_minor": 1},
    "tiers": [{"min_conversions": 5, "referrer": {"fixed_minor": 2}}], "tier_period_days": 7}])");
  EXPECT_EQ(tier_period_days(weekly, "signup"), 7u);
  auto flat = rules(R"([{"event": "sale", "referrer": {"percent": 20}}])");
  EXPECT_EQ(tier_period_days(flat, "sale"), 0u);
}

TEST(ComputeTest, RecurringSalesEarnWithinTheMonths) {
  auto r = rules(R"([{"event": "sale", "referrer": {"percent": 10}, "recurring_months": 3}])");
  EXPECT_EQ(sale(r, 1000).referrer_minor, 100);  // the first sale
  EXPECT_EQ(repeat_sale(r, 1000, 0).referrer_minor, 100);
  EXPECT_EQ(repeat_sale(r, 1000, 2).referrer_minor, 100);
  RewardOutcome late = repeat_sale(r, 1000, 3);
  EXPECT_EQ(late.rule_index, -1);
  EXPECT_EQ(late.referrer_minor, 0);
  EXPECT_EQ(late.explanation,
            "the customer's first sale was 3 whole months ago, past recurring_months");
  EXPECT_EQ(repeat_sale(r, 1000, 40).referrer_minor, 0);
}

TEST(ComputeTest, WithoutRecurringMonthsOnlyTheFirstSaleEarns) {
  auto r = rules(R"([{"event": "sale", "referrer": {"percent": 10}}])");
  EXPECT_EQ(sale(r, 1000).referrer_minor, 100);
  RewardOutcome second = repeat_sale(r, 1000, 0);
  EXPECT_EQ(second.rule_index, -1);
  EXPECT_EQ(second.referrer_minor, 0);
  EXPECT_EQ(second.explanation, "only the customer's first sale earns");
}

TEST(ComputeTest, RecurringDoesNotLimitSignups) {
  auto r = rules(R"([{"event": "signup", "referrer": {"fixed_minor": 500}}])");
  RewardContext ctx{.event = "signup", .first_sale = false, .months_since_first_sale = 50};
  EXPECT_EQ(compute(r, ctx).referrer_minor, 500);
}

TEST(ValidateRulesTest, AcceptsTheDocumentedExamples) {
  EXPECT_EQ(problem(R"([
    {"event": "signup", "referrer": {"fixed_minor": 500}, "referee": {"fixed_minor": 500}},
    {"event": "sale", "referrer": {"percent": 20, "max_minor": 10000}, "recurring_months": 12,
     "tiers": [{"min_conversions": 10, "referrer": {"percent": 25, "max_minor": 15000}}],
     "tier_period_days": 30, "min_amount_minor": 1000}])"),
            "");
  EXPECT_EQ(problem("[]"), "");
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {"percent": 12.5, "min_minor": 0}}])"), "");
}

TEST(ValidateRulesTest, RejectsBadShapes) {
  EXPECT_EQ(problem(R"({"event": "sale"})"), "rewards must be an array");
  EXPECT_EQ(problem("[1]"), "rewards[0] must be an object");
  EXPECT_EQ(problem(R"([{"referrer": {"fixed_minor": 1}}])"),
            "rewards[0].event must be signup or sale");
  EXPECT_EQ(problem(R"([{"event": "click", "referrer": {"fixed_minor": 1}}])"),
            "rewards[0].event must be signup or sale");
  EXPECT_EQ(problem(R"([{"event": "sale"}])"), "rewards[0] needs referrer or referee amounts");
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {"fixed_minor": 1}}, {"event": "sale",
                        "referrer": 5}])"),
            "rewards[1].referrer must be an object with fixed_minor or percent");
}

TEST(ValidateRulesTest, RejectsBadAmounts) {
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {}}])"),
            "rewards[0].referrer needs exactly one of fixed_minor and percent");
  EXPECT_EQ(problem(R"([{"event": "sale", "referee": {"fixed_minor": 1, "percent": 2}}])"),
            "rewards[0].referee needs exactly one of fixed_minor and percent");
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {"fixed_minor": -1}}])"),
            "rewards[0].referrer.fixed_minor must be a non-negative integer of minor units");
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {"fixed_minor": 1.5}}])"),
            "rewards[0].referrer.fixed_minor must be a non-negative integer of minor units");
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {"percent": 5, "max_minor": "9"}}])"),
            "rewards[0].referrer.max_minor must be a non-negative integer of minor units");
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {"percent": 5, "min_minor": -2}}])"),
            "rewards[0].referrer.min_minor must be a non-negative integer of minor units");
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {"percent": 100.5}}])"),
            "rewards[0].referrer.percent must be a number from 0 to 100");
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {"percent": -1}}])"),
            "rewards[0].referrer.percent must be a number from 0 to 100");
  EXPECT_EQ(problem(R"([{"event": "sale", "referrer": {"percent": "20"}}])"),
            "rewards[0].referrer.percent must be a number from 0 to 100");
}

TEST(ValidateRulesTest, RejectsBadRuleOptions) {
  constexpr std::string_view kHead = R"([{"event": "sale", "referrer": {"percent": 5}, )";
  auto with = [&](std::string_view tail) {
    return problem(std::string(kHead) + std::string(tail));
  };
  EXPECT_EQ(with(R"("recurring_months": -1}])"),
            "rewards[0].recurring_months must be a non-negative integer");
  EXPECT_EQ(with(R"("recurring_months": 1.5}])"),
            "rewards[0].recurring_months must be a non-negative integer");
  EXPECT_EQ(with(R"("tier_period_days": "30"}])"),
            "rewards[0].tier_period_days must be a non-negative integer");
  EXPECT_EQ(with(R"("min_amount_minor": -100}])"),
            "rewards[0].min_amount_minor must be a non-negative integer");
  EXPECT_EQ(with(R"("tiers": {"min_conversions": 3}}])"), "rewards[0].tiers must be an array");
  EXPECT_EQ(with(R"("tiers": [{"referrer": {"percent": 6}}]}])"),
            "rewards[0].tiers entries need an integer min_conversions");
  EXPECT_EQ(with(R"("tiers": [{"min_conversions": 2.5}]}])"),
            "rewards[0].tiers entries need an integer min_conversions");
  EXPECT_EQ(with(R"("tiers": [{"min_conversions": 3, "referrer": {"percent": 101}}]}])"),
            "rewards[0].tiers.referrer.percent must be a number from 0 to 100");
}

}  // namespace
}  // namespace earnd::rewards
