#include "earnd/rewards/rules.h"

#include <cmath>

#include <boost/json.hpp>

#include "earnd/common/money.h"

namespace json = boost::json;

namespace earnd::rewards {
namespace {

std::int64_t int_of(const json::object& o, const char* key, std::int64_t def) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_number()) {
    return def;
  }
  return it->value().to_number<std::int64_t>();
}

std::optional<std::string> check_amounts(const json::value& v, const std::string& where) {
  if (!v.is_object()) {
    return where + " must be an object with fixed_minor or percent";
  }
  const auto& o = v.get_object();
  bool fixed = o.contains("fixed_minor");
  bool pct = o.contains("percent");
  if (fixed == pct) {
    return where + " needs exactly one of fixed_minor and percent";
  }
  for (const char* k : {"fixed_minor", "max_minor", "min_minor"}) {
    auto it = o.find(k);
    if (it != o.end() && !(it->value().is_int64() && it->value().get_int64() >= 0 &&
                           it->value().get_int64() <= kMaxAmountMinor)) {
      return where + "." + k + " must be a non-negative integer of minor units";
    }
  }
  if (pct) {
    const json::value& p = o.at("percent");
    double v = p.is_number() ? p.to_number<double>() : -1;
    if (v < 0 || v > 100) {
      return where + ".percent must be a number from 0 to 100";
    }
    if (std::abs(v * 100 - std::round(v * 100)) > 1e-6) {
      return where + ".percent may have at most two decimals";
    }
  }
  return std::nullopt;
}

// Basis points of a percent given with up to two decimals (12.5 -> 1250).
std::int64_t basis_points(const json::value& p) {
  return static_cast<std::int64_t>(std::llround(p.to_number<double>() * 100.0));
}

std::int64_t amount_for(const json::object& a, std::int64_t base) {
  if (auto it = a.find("fixed_minor"); it != a.end()) {
    return it->value().to_number<std::int64_t>();
  }
  std::int64_t v = percent_of(base, basis_points(a.at("percent")));
  if (auto it = a.find("max_minor"); it != a.end()) {
    v = std::min(v, it->value().to_number<std::int64_t>());
  }
  if (auto it = a.find("min_minor"); it != a.end()) {
    v = std::max(v, it->value().to_number<std::int64_t>());
  }
  return v;
}

std::string describe(const json::object& a) {
  if (auto it = a.find("fixed_minor"); it != a.end()) {
    return "a fixed " + json::serialize(it->value()) + " minor units";
  }
  std::string s = json::serialize(a.at("percent")) + "% of the amount, rounded half to even";
  if (auto it = a.find("max_minor"); it != a.end()) {
    s += ", at most " + json::serialize(it->value());
  }
  return s;
}

}  // namespace

std::int64_t share_of(std::int64_t amount, std::int64_t part, std::int64_t whole) noexcept {
  // Exact in 128 bits, then half to even on the remainder.
  __int128 n = static_cast<__int128>(amount) * part;
  __int128 q = n / whole;
  __int128 r = n % whole;
  if (r * 2 > whole || (r * 2 == whole && (q % 2) != 0)) {
    ++q;
  }
  return static_cast<std::int64_t>(q);
}

std::int64_t percent_of(std::int64_t amount_minor, std::int64_t basis_points) noexcept {
  return share_of(amount_minor, basis_points, 10000);
}

std::optional<std::string> validate_rules(const json::value& rules) {
  if (!rules.is_array()) {
    return std::string("rewards must be an array");
  }
  int i = 0;
  for (const auto& r : rules.get_array()) {
    std::string where = "rewards[" + std::to_string(i++) + "]";
    if (!r.is_object()) {
      return where + " must be an object";
    }
    const auto& o = r.get_object();
    auto ev = o.find("event");
    if (ev == o.end() || !ev->value().is_string() ||
        (ev->value().get_string() != "signup" && ev->value().get_string() != "sale")) {
      return where + ".event must be signup or sale";
    }
    if (!o.contains("referrer") && !o.contains("referee")) {
      return where + " needs referrer or referee amounts";
    }
    for (const char* side : {"referrer", "referee"}) {
      if (auto it = o.find(side); it != o.end()) {
        if (auto e = check_amounts(it->value(), where + "." + side)) {
          return e;
        }
      }
    }
    for (const char* k : {"recurring_months", "tier_period_days", "min_amount_minor"}) {
      if (auto it = o.find(k);
          it != o.end() && !(it->value().is_int64() && it->value().get_int64() >= 0)) {
        return where + "." + k + " must be a non-negative integer";
      }
    }
    if (auto it = o.find("tiers"); it != o.end()) {
      if (!it->value().is_array()) {
        return where + ".tiers must be an array";
      }
      for (const auto& t : it->value().get_array()) {
        if (!t.is_object() || !t.get_object().contains("min_conversions") ||
            !t.get_object().at("min_conversions").is_int64()) {
          return where + ".tiers entries need an integer min_conversions";
        }
        if (auto tr = t.get_object().find("referrer"); tr != t.get_object().end()) {
          if (auto e = check_amounts(tr->value(), where + ".tiers.referrer")) {
            return e;
          }
        }
      }
    }
  }
  return std::nullopt;
}

std::uint32_t tier_period_days(const json::value& rules, std::string_view event) {
  if (!rules.is_array()) {
    return 0;
  }
  for (const auto& r : rules.get_array()) {
    const auto& o = r.get_object();
    if (o.at("event").get_string() == event && o.contains("tiers")) {
      return static_cast<std::uint32_t>(int_of(o, "tier_period_days", 30));
    }
  }
  return 0;
}

RewardOutcome compute(const json::value& rules, const RewardContext& ctx) {
  RewardOutcome out;
  if (!rules.is_array()) {
    return out;
  }
  int index = 0;
  for (const auto& r : rules.get_array()) {
    const auto& o = r.get_object();
    if (o.at("event").get_string() != ctx.event) {
      ++index;
      continue;
    }
    if (ctx.event == "sale") {
      if (ctx.amount_minor < int_of(o, "min_amount_minor", 0)) {
        out.explanation = "the sale is below the rule's min_amount_minor";
        return out;
      }
      std::int64_t months = int_of(o, "recurring_months", 0);
      if (!ctx.first_sale && ctx.months_since_first_sale >= static_cast<std::uint32_t>(months)) {
        out.explanation = months == 0 ? "only the customer's first sale earns"
                                      : "the customer's first sale was " +
                                            std::to_string(ctx.months_since_first_sale) +
                                            " whole months ago, past recurring_months";
        return out;
      }
    }
    json::object applied = o;
    json::object referrer = o.contains("referrer") ? o.at("referrer").get_object() : json::object();
    if (auto tiers = o.find("tiers"); tiers != o.end()) {
      std::int64_t best = -1;
      for (const auto& t : tiers->value().get_array()) {
        std::int64_t min = t.get_object().at("min_conversions").get_int64();
        if (ctx.conversions_in_period >= min && min > best && t.get_object().contains("referrer")) {
          best = min;
          referrer = t.get_object().at("referrer").get_object();
        }
      }
      if (best >= 0) {
        applied["tier"] = best;
      }
    }
    applied["referrer"] = referrer;
    out.rule_index = index;
    if (!referrer.empty()) {
      out.referrer_minor = amount_for(referrer, ctx.amount_minor);
    }
    if (auto it = o.find("referee"); it != o.end()) {
      out.referee_minor = amount_for(it->value().get_object(), ctx.amount_minor);
    }
    out.explanation = "rule " + std::to_string(index) + " (" + std::string(ctx.event) + "): " +
                      (referrer.empty() ? std::string("no referrer reward") : describe(referrer));
    out.rule = std::move(applied);
    return out;
  }
  out.explanation = "no rule for " + std::string(ctx.event);
  return out;
}

}  // namespace earnd::rewards
