#pragma once

// Reward rules: what a referrer (and the referred customer) earn for a conversion. A program's
// rules are a JSON array; each rule names its event and amounts:
//
//   {"event": "signup", "referrer": {"fixed_minor": 500}, "referee": {"fixed_minor": 500}}
//   {"event": "sale", "referrer": {"percent": 20, "max_minor": 10000}, "recurring_months": 12,
//    "tiers": [{"min_conversions": 10, "referrer": {"percent": 25, "max_minor": 15000}}],
//    "tier_period_days": 30, "min_amount_minor": 1000}
//
// Amounts: fixed_minor, or percent (up to two decimals) of the conversion's amount with an
// optional max_minor cap and min_minor floor; percentages round half to even on minor units.
// recurring_months: a sale earns while it is within that many months of the customer's first
// sale; without it only the customer's first sale earns (a sale without customer_id counts as
// a first sale). tiers: the highest tier whose min_conversions the referrer has reached (its
// attributed conversions of this event in the last tier_period_days, this one included)
// replaces the rule's amounts. min_amount_minor: smaller sales earn nothing.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "earnd/common/error.h"

namespace earnd::rewards {

// amount * basis_points / 10000, rounded half to even. amount >= 0, basis_points >= 0.
std::int64_t percent_of(std::int64_t amount_minor, std::int64_t basis_points) noexcept;

// amount * part / whole, rounded half to even. 0 <= part <= whole, whole > 0.
std::int64_t share_of(std::int64_t amount, std::int64_t part, std::int64_t whole) noexcept;

// Checks a rules array when a program is saved; the message says what is wrong.
[[nodiscard]] std::optional<std::string> validate_rules(const boost::json::value& rules);

struct RewardContext {
  std::string_view event;         // signup or sale
  std::int64_t amount_minor = 0;  // the sale amount (0 for signups)
  std::uint64_t at_ms = 0;
  // Whether this is the customer's first sale (always true without a customer id), and the
  // whole months since that first sale otherwise.
  bool first_sale = true;
  std::uint32_t months_since_first_sale = 0;
  // The referrer's attributed conversions of this event type in the rule's tier period,
  // including this one. Filled by the caller from tier_period_days(rule).
  std::int64_t conversions_in_period = 1;
};

struct RewardOutcome {
  std::int64_t referrer_minor = 0;
  std::int64_t referee_minor = 0;
  int rule_index = -1;      // which rule applied; -1 for none
  std::string explanation;  // in words, for explain and the ledger
  boost::json::value rule;  // a copy of the rule as applied (tier resolved)
};

// The first rule for ctx.event that applies, or an outcome with rule_index -1. rules must
// have passed validate_rules. Pure; thread-safe.
RewardOutcome compute(const boost::json::value& rules, const RewardContext& ctx);

// The tier period of the first rule for event, in days (0 when it has no tiers).
std::uint32_t tier_period_days(const boost::json::value& rules, std::string_view event);

}  // namespace earnd::rewards
