#include "earnd/rewards/ledger.h"

#include <algorithm>
#include <map>

#include <boost/json.hpp>
#include <date/date.h>

#include "earnd/common/hash.h"
#include "earnd/common/money.h"
#include "earnd/common/secrets.h"
#include "earnd/common/time.h"
#include "earnd/links/catalog.h"
#include "earnd/reports/reports.h"
#include "earnd/rewards/rules.h"
#include "earnd/store/stats.h"
#include "earnd/store/store.h"

namespace json = boost::json;

namespace earnd::rewards {
namespace {

// The id of the reward entry of one kind for one conversion: derived from the program, event id
// and kind instead of drawn at random, so that working out the same conversion again (a cluster
// node finishing an outcome it claimed before it died) makes the same entry, with the same id
// as in the answer the cluster already gave. Same form as random ids: "le_" and 16 of [a-z0-9].
std::string entry_id(std::string_view program, std::string_view event_id, std::string_view kind) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string key(program);
  key.push_back('\0');
  key.append(event_id).push_back('\0');
  key.append(kind);
  std::uint64_t h[2] = {xxh3(key), xxh3(key + "\x01")};
  std::string id = "le_";
  for (int i = 0; i < 16; ++i) {
    std::uint64_t& w = h[i / 8];
    id.push_back(kAlphabet[w % 36]);
    w /= 36;
  }
  return id;
}

std::string be8(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 7; i >= 0; --i) {
    s[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return s;
}

std::string entry_key(std::string_view referrer, std::uint64_t at_ms, std::string_view id) {
  std::string k = "le/";
  k.append(referrer).push_back('\0');
  k += be8(at_ms);
  k.append(id);
  return k;
}

std::string index_key(std::string_view id) {
  return "li/" + std::string(id);
}

std::string approval_key(std::uint64_t at_ms, std::string_view id) {
  return "ap/" + be8(at_ms) + std::string(id);
}

std::string first_sale_key(std::string_view program, std::string_view customer) {
  std::string k = "fs/";
  k.append(program).push_back('\0');
  k.append(customer);
  return k;
}

std::int64_t num(const json::object& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() || !it->value().is_number() ? 0 : it->value().to_number<std::int64_t>();
}

std::string str(const json::object& o, const char* key) {
  auto it = o.find(key);
  return it == o.end() || !it->value().is_string() ? "" : std::string(it->value().get_string());
}

std::uint32_t whole_months_between(std::uint64_t from_ms, std::uint64_t to_ms) {
  using namespace date;
  auto a = year_month_day{
      floor<days>(sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(from_ms)))};
  auto b = year_month_day{
      floor<days>(sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(to_ms)))};
  int months =
      (int(b.year()) - int(a.year())) * 12 + (int(unsigned(b.month())) - int(unsigned(a.month())));
  if (unsigned(b.day()) < unsigned(a.day())) {
    --months;
  }
  return months < 0 ? 0u : static_cast<std::uint32_t>(months);
}

// Writes a new entry and its index; schedules its approval when it is pending.
void append(DocTxn& txn, json::object& e, std::uint64_t at_ms) {
  std::string id = str(e, "id");
  std::string key = entry_key(str(e, "referrer_id"), at_ms, id);
  if (str(e, "state") == "pending") {
    txn.put(approval_key(static_cast<std::uint64_t>(num(e, "approve_at_ms")), id), key);
  }
  txn.put(index_key(id), key);
  txn.put(key, json::serialize(e));
}

json::object public_entry(const json::object& e) {
  json::object out = e;
  out.erase("approve_at_ms");
  out.erase("created_ms");
  return out;
}

}  // namespace

Balance summarize(const std::vector<json::object>& entries) {
  std::map<std::string, std::string> state_of;
  for (const auto& e : entries) {
    state_of[str(e, "id")] = str(e, "state");
  }
  Balance b;
  for (const auto& e : entries) {
    std::int64_t amount = num(e, "amount_minor");
    std::string kind = str(e, "kind");
    std::string state = str(e, "state");
    if (kind == "referee") {
      continue;  // granted by the merchant to the customer; not the referrer's money
    }
    if (kind == "reversal") {
      b.reversed_minor = saturating_add(b.reversed_minor, amount);
      std::string orig = state_of[str(e, "reverses")];
      if (e.contains("settled_payout")) {
        b.paid_minor = saturating_add(b.paid_minor, amount);
      } else if (orig == "pending") {
        b.pending_minor = saturating_add(b.pending_minor, amount);
      } else {
        b.approved_minor = saturating_add(b.approved_minor, amount);
      }
      continue;
    }
    if (state == "pending") {
      b.pending_minor = saturating_add(b.pending_minor, amount);
    } else if (state == "approved") {
      b.approved_minor = saturating_add(b.approved_minor, amount);
    } else if (state == "paid") {
      b.paid_minor = saturating_add(b.paid_minor, amount);
    }
  }
  b.balance_minor = saturating_add(b.pending_minor, b.approved_minor);
  return b;
}

Ledger::Ledger(const store::Store& store, const links::Catalog& catalog)
    : store_(store), catalog_(catalog) {}

json::array Ledger::reward(DocTxn& txn,
                           const links::ProgramView& program,
                           json::object& conversion,
                           std::uint64_t at_ms) {
  json::value rules = json::parse(program.rewards_json);
  std::string type = str(conversion, "type");
  std::string referrer = str(conversion, "referrer_id");
  std::string customer = str(conversion, "customer_id");
  RewardContext ctx{.event = type, .amount_minor = num(conversion, "amount_minor"), .at_ms = at_ms};

  // Recurring: months since the customer's first sale with this program.
  if (type == "sale" && !customer.empty()) {
    std::string key = first_sale_key(program.id, customer);
    if (auto first = txn.get(key)) {
      ctx.first_sale = false;
      ctx.months_since_first_sale = whole_months_between(std::stoull(*first), at_ms);
    } else {
      txn.put(key, std::to_string(at_ms));
    }
  }
  // Tiers: the referrer's attributed conversions of this kind in the period, this one included.
  if (std::uint32_t days = tier_period_days(rules, type); days > 0) {
    std::uint64_t from = at_ms > days * 86'400'000ull ? at_ms - days * 86'400'000ull : 0;
    int index = type == "sale" ? store::kStatSales : store::kStatSignups;
    std::string prefix = store::stats_prefix(program.id, referrer);
    std::uint32_t from_bucket = store::bucket_of(from);
    std::uint32_t to_bucket = store::bucket_of(at_ms) + 1;
    // Stored counts, plus those of earlier conversions in this same batch.
    std::int64_t n = 1 + txn.pending_stat(prefix, from_bucket, to_bucket, index);
    (void)store_.scan_stats(prefix, from_bucket, to_bucket,
                            [&](std::uint32_t, const std::vector<std::int64_t>& v) {
                              if (index < static_cast<int>(v.size())) {
                                n = saturating_add(n, v[index]);
                              }
                            });
    ctx.conversions_in_period = n;
  }

  RewardOutcome outcome = compute(rules, ctx);
  json::array created;
  json::array ids;
  std::uint64_t approve_at = at_ms + std::uint64_t{program.hold_days} * 86'400'000;
  auto make = [&](const char* kind, std::int64_t amount) {
    std::string event_id = conversion["event_id"].is_string()
                               ? std::string(conversion["event_id"].get_string())
                               : std::string();
    json::object e{{"id", entry_id(program.id, event_id, kind)},
                   {"kind", kind},
                   {"program", program.id},
                   {"referrer_id", referrer},
                   {"amount_minor", amount},
                   {"currency", program.currency},
                   {"state", program.hold_days == 0 ? "approved" : "pending"},
                   {"event_id", conversion["event_id"]},
                   {"click_id", conversion["click_id"]},
                   {"customer_id", customer},
                   {"rule", outcome.rule},
                   {"explanation", outcome.explanation},
                   {"created_at", format_rfc3339(at_ms)},
                   {"created_ms", at_ms},
                   {"approve_at", format_rfc3339(approve_at)},
                   {"approve_at_ms", approve_at}};
    append(txn, e, at_ms);
    ids.push_back(e["id"]);
    json::object pub = public_entry(e);
    txn.emit(program.id, "reward.created", pub);
    if (program.hold_days == 0) {
      txn.emit(program.id, "reward.approved", pub);
    }
    created.push_back(std::move(pub));
  };
  if (outcome.referrer_minor > 0) {
    make("referrer", outcome.referrer_minor);
    txn.add_stat(program.id, referrer, at_ms, store::kStatRewardsMinor, outcome.referrer_minor);
  }
  if (outcome.referee_minor > 0 && !customer.empty()) {
    make("referee", outcome.referee_minor);
  }
  conversion["reward_entries"] = std::move(ids);
  conversion["reward_explanation"] = outcome.explanation;
  return created;
}

json::array Ledger::reverse(DocTxn& txn,
                            json::object& sale,
                            std::int64_t refund_minor,
                            std::string_view refund_event_id,
                            std::uint64_t at_ms) {
  json::array created;
  std::int64_t sold = num(sale, "amount_minor");
  std::int64_t refunded_total = num(sale, "refunded_minor") + refund_minor;  // after this refund
  auto it = sale.find("reward_entries");
  if (it == sale.end() || !it->value().is_array() || sold <= 0) {
    return created;
  }
  for (const auto& id : it->value().get_array()) {
    auto key = txn.get(index_key(id.get_string()));
    auto text = key ? txn.get(*key) : std::nullopt;
    if (!text) {
      continue;
    }
    json::object orig = json::parse(*text).as_object();
    if (str(orig, "kind") != "referrer") {
      continue;
    }
    // The share reversed so far follows the refunded share of the sale, so several partial
    // refunds add up to exactly the whole reward when the whole sale is refunded.
    std::int64_t amount = num(orig, "amount_minor");
    std::int64_t target = refunded_total >= sold ? amount : share_of(amount, refunded_total, sold);
    std::int64_t delta = target - num(orig, "reversed_minor");
    if (delta <= 0) {
      continue;
    }
    orig["reversed_minor"] = target;
    txn.put(*key, json::serialize(orig));
    json::object e{
        {"id", random_token("le_", 16)},
        {"kind", "reversal"},
        {"program", orig["program"]},
        {"referrer_id", orig["referrer_id"]},
        {"amount_minor", -delta},
        {"currency", orig["currency"]},
        {"state", "reversed"},
        {"reverses", orig["id"]},
        {"event_id", std::string(refund_event_id)},
        {"click_id", orig["click_id"]},
        {"customer_id", orig["customer_id"]},
        {"explanation", "a refund of " + std::to_string(refund_minor) + " of the sale's " +
                            std::to_string(sold) + " reverses its share"},
        {"created_at", format_rfc3339(at_ms)},
        {"created_ms", at_ms}};
    append(txn, e, at_ms);
    txn.add_stat(str(orig, "program"), str(orig, "referrer_id"), at_ms, store::kStatRewardsMinor,
                 -delta);
    json::object pub = public_entry(e);
    txn.emit(str(orig, "program"), "reward.reversed", pub);
    created.push_back(std::move(pub));
  }
  return created;
}

std::size_t Ledger::approve_due(DocTxn& txn, std::uint64_t now_ms) {
  std::vector<std::pair<std::string, std::string>> due;
  std::string limit = "ap/" + be8(now_ms + 1);
  store_.scan_docs("ap/", [&](std::string_view k, std::string_view v) {
    if (std::string_view(k) >= limit) {
      return false;
    }
    due.emplace_back(std::string(k), std::string(v));
    return due.size() < 10'000;
  });
  for (const auto& [ap, key] : due) {
    txn.del(ap);
    auto text = txn.get(key);
    if (!text) {
      continue;
    }
    json::object e = json::parse(*text).as_object();
    if (str(e, "state") != "pending") {
      continue;
    }
    e["state"] = "approved";
    e["approved_at"] = format_rfc3339(now_ms);
    txn.put(key, json::serialize(e));
    txn.emit(str(e, "program"), "reward.approved", public_entry(e));
  }
  return due.size();
}

std::vector<json::object> Ledger::entries_of(std::string_view referrer_id) const {
  std::vector<json::object> out;
  std::string prefix = "le/" + std::string(referrer_id);
  prefix.push_back('\0');
  store_.scan_docs(prefix, [&](std::string_view, std::string_view v) {
    out.push_back(json::parse(v).as_object());
    return true;
  });
  return out;
}

std::optional<json::object> Ledger::view(std::string_view referrer_id) const {
  auto info = catalog_.referrer(referrer_id);
  if (!info) {
    return std::nullopt;
  }
  auto entries = entries_of(referrer_id);
  Balance b = summarize(entries);
  auto snap = catalog_.snapshot();
  const links::ProgramView* program = snap->program(info->program);
  json::array list;
  for (const auto& e : entries) {
    list.push_back(public_entry(e));
  }
  return json::object{{"referrer_id", std::string(referrer_id)},
                      {"program", info->program},
                      {"currency", program ? program->currency : ""},
                      {"balance_minor", b.balance_minor},
                      {"pending_minor", b.pending_minor},
                      {"approved_minor", b.approved_minor},
                      {"paid_minor", b.paid_minor},
                      {"reversed_minor", b.reversed_minor},
                      {"payout_minimum_minor", program ? program->payout_minimum_minor : 0},
                      {"entries", std::move(list)}};
}

}  // namespace earnd::rewards

namespace earnd::rewards {
namespace {

std::string payout_key(std::string_view id) {
  return "po/" + std::string(id);
}

std::string program_payout_key(std::string_view program, std::uint64_t at_ms, std::string_view id) {
  std::string k = "pp/";
  k.append(program).push_back('\0');
  k += be8(at_ms);
  k.append(id);
  return k;
}

// Whether an entry is payable now and not yet in a payout: approved rewards, and reversals of
// rewards that were approved or paid.
bool payable(const json::object& e, const std::map<std::string, std::string>& state_of) {
  if (e.contains("payout_id") || e.contains("settled_payout")) {
    return false;
  }
  std::string kind = str(e, "kind");
  if (kind == "referrer") {
    return str(e, "state") == "approved";
  }
  if (kind == "reversal") {
    auto it = state_of.find(str(e, "reverses"));
    return it != state_of.end() && (it->second == "approved" || it->second == "paid");
  }
  return false;
}

// What a payout of one referrer would gather now: its payable entries and their sum.
struct Gathered {
  std::int64_t total_minor = 0;
  std::vector<const json::object*> entries;  // point into the entries given to gather()
};

Gathered gather(const std::vector<json::object>& entries) {
  std::map<std::string, std::string> state_of;
  for (const auto& e : entries) {
    state_of[str(e, "id")] = str(e, "state");
  }
  Gathered g;
  for (const auto& e : entries) {
    if (payable(e, state_of)) {
      g.total_minor = saturating_add(g.total_minor, num(e, "amount_minor"));
      g.entries.push_back(&e);
    }
  }
  return g;
}

// The rule of POST /v1/payouts, shared with its preview: a referrer is paid when the gathered
// amount reaches the program's minimum, and never a zero or negative amount.
bool reaches_minimum(std::int64_t gathered_minor, std::int64_t minimum_minor) {
  return gathered_minor >= std::max<std::int64_t>(1, minimum_minor);
}

}  // namespace

json::object Ledger::create_payouts(DocTxn& txn, std::string_view program, std::uint64_t now_ms) {
  auto snap = catalog_.snapshot();
  const links::ProgramView* p = snap->program(program);
  if (p == nullptr) {
    return json::object{
        {"error", json::object{{"code", "not_found"}, {"message", "no such program"}}}};
  }
  for (const auto& r : catalog_.referrers_of(program)) {
    auto entries = entries_of(r.id);
    Gathered gathered = gather(entries);
    if (!reaches_minimum(gathered.total_minor, p->payout_minimum_minor)) {
      continue;
    }
    std::string id = random_token("po_", 16);
    json::array entry_ids;
    for (const json::object* e : gathered.entries) {
      json::object updated = *e;
      updated["payout_id"] = id;
      auto key = txn.get(index_key(str(updated, "id")));
      if (key) {
        txn.put(*key, json::serialize(updated));
      }
      entry_ids.push_back(updated["id"]);
    }
    json::object payout{{"id", id},
                        {"program", std::string(program)},
                        {"referrer_id", r.id},
                        {"external_id", r.external_id},
                        {"name", r.name},
                        {"amount_minor", gathered.total_minor},
                        {"currency", p->currency},
                        {"status", "created"},
                        {"entries", std::move(entry_ids)},
                        {"created_at", format_rfc3339(now_ms)}};
    txn.put(payout_key(id), json::serialize(payout));
    txn.put(program_payout_key(program, now_ms, id), id);
    txn.emit(std::string(program), "payout.created", payout);
  }
  return json::object{};
}

std::optional<json::object> Ledger::due_payouts(std::string_view program) const {
  auto snap = catalog_.snapshot();
  const links::ProgramView* p = snap->program(program);
  if (p == nullptr) {
    return std::nullopt;
  }
  json::array due;
  std::int64_t total = 0;
  for (const auto& r : catalog_.referrers_of(program)) {
    auto entries = entries_of(r.id);
    Gathered gathered = gather(entries);
    Balance balance = summarize(entries);
    if (gathered.total_minor == 0 && balance.pending_minor == 0) {
      continue;  // nothing owed now or later: not a row of a payout screen
    }
    bool eligible = reaches_minimum(gathered.total_minor, p->payout_minimum_minor);
    json::object row{{"referrer_id", r.id}};
    if (!r.external_id.empty()) {
      row["external_id"] = r.external_id;
    }
    if (!r.name.empty()) {
      row["name"] = r.name;
    }
    if (!r.codes.empty()) {
      row["code"] = r.codes.front();
    }
    row["approved_minor"] = gathered.total_minor;
    row["pending_minor"] = balance.pending_minor;
    row["balance_minor"] = balance.balance_minor;
    row["eligible"] = eligible;
    total = saturating_add(total, eligible ? gathered.total_minor : 0);
    due.push_back(std::move(row));
  }
  return json::object{{"program", std::string(program)},
                      {"currency", p->currency},
                      {"minimum_minor", p->payout_minimum_minor},
                      {"due", std::move(due)},
                      {"total_minor", total}};
}

std::optional<json::object> Ledger::mark_paid(DocTxn& txn,
                                              std::string_view payout_id,
                                              std::uint64_t now_ms) {
  auto text = txn.get(payout_key(payout_id));
  if (!text) {
    return std::nullopt;
  }
  json::object payout = json::parse(*text).as_object();
  if (str(payout, "status") == "paid") {
    return payout;  // idempotent
  }
  for (const auto& id : payout["entries"].as_array()) {
    auto key = txn.get(index_key(id.get_string()));
    auto etext = key ? txn.get(*key) : std::nullopt;
    if (!etext) {
      continue;
    }
    json::object e = json::parse(*etext).as_object();
    if (str(e, "kind") == "reversal") {
      e["settled_payout"] = std::string(payout_id);
    } else {
      e["state"] = "paid";
      e["paid_at"] = format_rfc3339(now_ms);
    }
    txn.put(*key, json::serialize(e));
  }
  payout["status"] = "paid";
  payout["paid_at"] = format_rfc3339(now_ms);
  txn.put(payout_key(payout_id), json::serialize(payout));
  txn.emit(str(payout, "program"), "payout.paid", payout);
  return payout;
}

std::optional<std::string> Ledger::payout_csv(std::string_view payout_id) const {
  auto text = store_.get_doc(payout_key(payout_id));
  if (!text || !*text) {
    return std::nullopt;
  }
  json::object p = json::parse(**text).as_object();
  std::string out =
      "payout_id,program,referrer_id,external_id,name,amount_minor,currency,entries,status,"
      "created_at\n";
  for (const char* k : {"id", "program", "referrer_id", "external_id", "name"}) {
    out += reports::csv_cell(str(p, k)) + ",";
  }
  out += std::to_string(num(p, "amount_minor")) + "," + reports::csv_cell(str(p, "currency")) +
         "," + std::to_string(p["entries"].as_array().size()) + "," + str(p, "status") + "," +
         str(p, "created_at") + "\n";
  return out;
}

json::object Ledger::list_payouts(std::string_view program, std::string_view status) const {
  json::array out;
  std::string prefix = "pp/" + std::string(program);
  prefix.push_back('\0');
  store_.scan_docs(prefix, [&](std::string_view, std::string_view id) {
    auto text = store_.get_doc(payout_key(id));
    if (text && *text) {
      json::object p = json::parse(**text).as_object();
      if (status.empty() || str(p, "status") == status) {
        out.push_back(std::move(p));
      }
    }
    return true;
  });
  return json::object{{"payouts", std::move(out)}};
}

}  // namespace earnd::rewards
