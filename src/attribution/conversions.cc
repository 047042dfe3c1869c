#include "earnd/attribution/conversions.h"

#include <limits>
#include <map>

#include <boost/json.hpp>

#include "earnd/attribution/matcher.h"
#include "earnd/common/click_id.h"
#include "earnd/common/money.h"
#include "earnd/common/time.h"
#include "earnd/links/catalog.h"
#include "earnd/rewards/ledger.h"
#include "earnd/store/stats.h"
#include "earnd/store/store.h"
#include "earnd/webhooks/outbox.h"

namespace json = boost::json;

namespace earnd::attribution {
namespace {

// A rejected request: carried out of the field checks by exception inside this file only and
// turned into a 4xx reply in handle().
struct Reject {
  unsigned status;
  std::string code;
  std::string message;
};

[[noreturn]] void reject(std::string code, std::string message, unsigned status = 400) {
  throw Reject{status, std::move(code), std::move(message)};
}

ConversionReply error_body(unsigned status, std::string_view code, std::string_view message) {
  json::object err{{"code", code}, {"message", message}};
  return {status, json::serialize(json::object{{"error", err}})};
}

std::string text_field(const json::object& o, const char* key, std::size_t max, bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    if (required) {
      reject("missing_field", std::string(key) + " is required");
    }
    return {};
  }
  if (!it->value().is_string()) {
    reject("invalid_field", std::string(key) + " must be a string");
  }
  std::string_view v = it->value().get_string();
  if (v.size() > max || (required && v.empty())) {
    reject("invalid_field",
           std::string(key) + " must have 1 to " + std::to_string(max) + " characters");
  }
  for (char c : v) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      reject("invalid_field", std::string(key) + " must not contain control characters");
    }
  }
  return std::string(v);
}

std::optional<std::int64_t> amount_field(const json::object& o) {
  auto it = o.find("amount_minor");
  if (it == o.end() || it->value().is_null()) {
    return std::nullopt;
  }
  const json::value& v = it->value();
  if (v.is_int64() && v.get_int64() >= 0 && v.get_int64() <= kMaxAmountMinor) {
    return v.get_int64();
  }
  if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(kMaxAmountMinor)) {
    return static_cast<std::int64_t>(v.get_uint64());
  }
  reject("invalid_amount", "amount_minor must be an integer of minor units from 0 to " +
                               std::to_string(kMaxAmountMinor));
}

std::string event_key(std::string_view program, std::string_view event_id) {
  std::string k = "e/";
  k.append(program).push_back('\0');
  k.append(event_id);
  return k;
}

std::string event_index_key(std::string_view event_id, std::string_view program) {
  std::string k = "x/";
  k.append(event_id).push_back('\0');
  k.append(program);
  return k;
}

// The lifetime totals of a program that kMaxTotalMinor bounds.
std::string totals_key(std::string_view program) {
  return "pt/" + std::string(program);
}

std::string binding_key(std::string_view program, std::string_view customer) {
  std::string k = "b/";
  k.append(program).push_back('\0');
  k.append(customer);
  return k;
}

// The fields of the stored document that form the API answer.
json::object answer_of(const json::object& doc) {
  json::object a;
  for (const char* k : {"event_id", "program", "type", "attributed", "referrer_id", "link_code",
                        "click_id", "match", "self_referral", "customer_id", "amount_minor",
                        "currency", "occurred_at", "refund_of", "rewards"}) {
    if (auto it = doc.find(k); it != doc.end()) {
      a[k] = it->value();
    }
  }
  return a;
}

json::value candidate_json(const Candidate& c, bool winner) {
  return json::object{{"click_id", c.id.to_string()},
                      {"ts", format_rfc3339(c.ts_ms)},
                      {"referrer_id", c.referrer_id},
                      {"link_code", c.code},
                      {"reason", c.reason == ClickReason::kHuman ? "" : reason_name(c.reason)},
                      {"eligible", c.reason == ClickReason::kHuman},
                      {"winner", winner}};
}

}  // namespace

// The documents a batch has written so far, seen by the later requests of the batch; also the
// ledger's transaction.
struct ConversionService::Batch final : rewards::DocTxn {
  explicit Batch(const store::Store& s) : store(s) {}

  const store::Store& store;
  store::Store::DocBatch writes;
  std::map<std::string, std::optional<std::string>> overlay;  // nullopt: deleted in this batch
  std::vector<webhooks::Event> events;

  // Where the batch stood before a request, so that a refused request leaves nothing behind.
  struct Mark {
    std::size_t puts, deletes, stat_adds, events, undo;
  };

  // Per put or delete: the key and what the overlay held for it before (nullopt: nothing).
  std::vector<std::pair<std::string, std::optional<std::optional<std::string>>>> undo;

  Mark mark() const {
    return {writes.puts.size(), writes.deletes.size(), writes.stat_adds.size(), events.size(),
            undo.size()};
  }

  void rollback(const Mark& m) {
    writes.puts.resize(m.puts);
    writes.deletes.resize(m.deletes);
    writes.stat_adds.resize(m.stat_adds);
    events.resize(m.events);
    while (undo.size() > m.undo) {
      auto& [key, before] = undo.back();
      if (before) {
        overlay[key] = std::move(*before);
      } else {
        overlay.erase(key);
      }
      undo.pop_back();
    }
  }

  void remember(const std::string& key) {
    auto it = overlay.find(key);
    undo.emplace_back(key, it == overlay.end() ? std::nullopt : std::optional(it->second));
  }

  std::optional<std::string> get(const store::Store&, const std::string& key) { return get(key); }

  std::optional<std::string> get(const std::string& key) override {
    if (auto it = overlay.find(key); it != overlay.end()) {
      return it->second;
    }
    auto r = store.get_doc(key);
    if (!r) {
      reject("storage", "storage could not be read", 503);
    }
    return *r;
  }

  void put(std::string key, std::string value) override {
    remember(key);
    overlay[key] = value;
    writes.puts.emplace_back(std::move(key), std::move(value));
  }

  void del(std::string key) override {
    remember(key);
    overlay[key] = std::nullopt;
    writes.deletes.push_back(std::move(key));
  }

  void add_stat(std::string_view program,
                std::string_view referrer,
                std::uint64_t at_ms,
                int index,
                std::int64_t amount) override {
    add_stats(program, referrer, at_ms, index, amount);
  }

  std::int64_t pending_stat(std::string_view prefix,
                            std::uint32_t from_bucket,
                            std::uint32_t to_bucket,
                            int index) const override {
    std::int64_t sum = 0;
    for (const auto& [key, values] : writes.stat_adds) {
      if (key.size() != prefix.size() + 4 || key.compare(0, prefix.size(), prefix) != 0) {
        continue;
      }
      std::uint32_t bucket = 0;
      for (std::size_t i = prefix.size(); i < key.size(); ++i) {
        bucket = (bucket << 8) | static_cast<unsigned char>(key[i]);
      }
      if (bucket >= from_bucket && bucket < to_bucket && index < static_cast<int>(values.size())) {
        sum = saturating_add(sum, values[index]);
      }
    }
    return sum;
  }

  void emit(std::string program, std::string type, json::object data) override {
    events.push_back({std::move(program), std::move(type), std::move(data)});
  }

  void add_stats(std::string_view program,
                 std::string_view referrer,
                 std::uint64_t at_ms,
                 int index,
                 std::int64_t amount) {
    std::vector<std::int64_t> v(store::kStatCount, 0);
    v[index] = amount;
    std::string key = store::stats_prefix(program, referrer);
    std::uint32_t bucket = store::bucket_of(at_ms);
    for (int i = 3; i >= 0; --i) {
      key.push_back(static_cast<char>((bucket >> (8 * i)) & 0xff));
    }
    writes.stat_adds.emplace_back(std::move(key), std::move(v));
  }
};

ConversionService::ConversionService(store::Store& store,
                                     const links::Catalog& catalog,
                                     rewards::Ledger& ledger,
                                     webhooks::Outbox* outbox,
                                     ConversionOptions options)
    : store_(store), catalog_(catalog), ledger_(ledger), outbox_(outbox), options_(options) {}

bool ConversionService::commit(Batch& b) {
  if (b.writes.puts.empty() && b.writes.stat_adds.empty() && b.writes.deletes.empty()) {
    return true;
  }
  std::vector<std::string> ids;
  if (outbox_ != nullptr && !b.events.empty()) {
    ids = outbox_->stage(b.writes, b.events);
  }
  if (options_.claim) {
    // Scale-out: where a restart's recovery of claimed outcomes starts (see main.cc).
    b.writes.puts.emplace_back(std::string(kLastCommitKey), std::to_string(now_ms()));
  }
  if (store_.write(b.writes, options_.sync)) {
    return false;
  }
  if (!ids.empty()) {
    outbox_->committed(ids);
  }
  return true;
}

std::string request_json(const ConversionRequest& req) {
  json::object o{{"program", req.program}, {"body", req.body}, {"publishable", req.publishable}};
  if (req.visitor_hash) {
    o["visitor_hash"] = *req.visitor_hash;
  }
  return json::serialize(o);
}

std::optional<ConversionRequest> request_from_json(std::string_view text) {
  ErrorCode ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    return std::nullopt;
  }
  const auto& o = v.as_object();
  const auto* program = o.if_contains("program");
  const auto* body = o.if_contains("body");
  if (program == nullptr || !program->is_string() || body == nullptr || !body->is_object()) {
    return std::nullopt;
  }
  ConversionRequest r;
  r.program = std::string(program->get_string());
  r.body = body->get_object();
  if (const auto* p = o.if_contains("publishable"); p && p->is_bool()) {
    r.publishable = p->get_bool();
  }
  if (const auto* h = o.if_contains("visitor_hash"); h && h->is_number()) {
    r.visitor_hash = h->to_number<std::uint64_t>();
  }
  return r;
}

std::vector<ConversionReply> ConversionService::process(std::vector<ConversionRequest>& batch) {
  Batch b(store_);
  std::vector<ConversionReply> replies;
  replies.reserve(batch.size());
  for (auto& req : batch) {
    replies.push_back(handle(b, req));
  }
  if (!commit(b)) {
    for (auto& r : replies) {
      if (r.status == 201 || r.status == 200) {
        r = error_body(503, "storage_unavailable", "the conversion could not be stored");
      }
    }
  }
  return replies;
}

std::size_t ConversionService::approve_due(std::uint64_t now_ms) {
  Batch b(store_);
  std::size_t n = 0;
  try {
    n = ledger_.approve_due(b, now_ms);
  } catch (const std::exception&) {
    return 0;  // Reject (storage) or a damaged entry; the next tick tries again
  }
  return commit(b) ? n : 0;
}

std::pair<unsigned, std::string> ConversionService::create_payouts(std::string_view program) {
  Batch b(store_);
  try {
    json::object r = ledger_.create_payouts(b, program, now_ms());
    if (r.contains("error")) {
      return {404, json::serialize(r)};
    }
  } catch (const Reject& r) {
    return {r.status, error_body(r.status, r.code, r.message).body};
  } catch (const std::exception& e) {
    return {500, error_body(500, "internal", e.what()).body};
  }
  if (!commit(b)) {
    return {503, error_body(503, "storage_unavailable", "the payouts could not be stored").body};
  }
  json::object open = ledger_.list_payouts(program, "created");
  return {200, json::serialize(open)};
}

std::pair<unsigned, std::string> ConversionService::mark_paid(std::string_view payout_id) {
  Batch b(store_);
  std::optional<json::object> p;
  try {
    p = ledger_.mark_paid(b, payout_id, now_ms());
  } catch (const Reject& r) {
    return {r.status, error_body(r.status, r.code, r.message).body};
  } catch (const std::exception& e) {
    return {500, error_body(500, "internal", e.what()).body};
  }
  if (!p) {
    return {404, error_body(404, "not_found", "no such payout").body};
  }
  if (!commit(b)) {
    return {503, error_body(503, "storage_unavailable", "the payout could not be stored").body};
  }
  return {200, json::serialize(*p)};
}

namespace {

std::string rule_text(Model m, std::uint32_t window_days) {
  std::string which = m == Model::kLastClick ? "latest" : "earliest";
  return std::string(model_name(m)) + ": the " + which +
         " human click of this visitor on this program within " + std::to_string(window_days) +
         " days before the conversion (both ends inclusive, ties broken by click id); "
         "bot, preview, prefetch, HEAD and velocity clicks never win";
}

}  // namespace

// Fills the attribution fields of doc: the named click's visitor, then the customer's binding,
// then (where the program allows it) the browser's visitor hash.
void ConversionService::attribute(Batch& b,
                                  const links::ProgramView& program,
                                  const ConversionRequest& req,
                                  std::uint64_t at,
                                  json::object& doc) {
  auto model = parse_model(program.model).value_or(Model::kLastClick);
  std::string customer = json::value_to<std::string>(doc["customer_id"]);
  json::object explain{{"model", model_name(model)}, {"window_days", program.window_days}};
  json::array candidates;
  bool candidates_cut = false;
  std::optional<Candidate> winner;
  std::string rule = "none";

  std::string click_text = text_field(req.body, "click_id", 64, false);
  if (!click_text.empty()) {
    auto id = ClickId::parse(click_text);
    if (!id) {
      reject("invalid_click_id", "click_id is not a click id issued by earnd");
    }
    auto click = store_.get_click(*id);
    if (click && !*click && options_.await_click && options_.await_click(*id)) {
      click = store_.get_click(*id);
    }
    if (!click) {
      reject("storage", "storage could not be read", 503);
    }
    if (!*click || (*click)->program != program.id) {
      reject("unknown_click", "no click with this click_id in this program");
    }
    const ClickRecord& c = **click;
    std::uint64_t when = c.ts_ms > at && c.ts_ms - at <= options_.max_future_skew_ms ? c.ts_ms : at;
    std::vector<Candidate> all;
    bool cut = false;
    auto m = match(store_,
                   {.visitor_hash = c.visitor_hash,
                    .at_ms = when,
                    .window_ms = std::uint64_t{program.window_days} * 86'400'000,
                    .model = model,
                    .program = program.id},
                   &all, &cut);
    if (!m) {
      reject("storage", "storage could not be read", 503);
    }
    winner = *m;
    for (const auto& cand : all) {
      candidates.push_back(candidate_json(cand, winner && cand.id == winner->id));
    }
    candidates_cut = cut;
    explain["named_click"] = json::object{{"click_id", click_text},
                                          {"ts", format_rfc3339(c.ts_ms)},
                                          {"reason", reason_name(c.reason)}};
    if (winner) {
      rule = "click_id";
      explain["rule"] = rule_text(model, program.window_days);
    }
  }

  if (!winner && !customer.empty()) {
    if (auto bound = b.get(store_, binding_key(program.id, customer))) {
      json::object bd = json::parse(*bound).as_object();
      auto bound_at = static_cast<std::uint64_t>(bd["bound_at_ms"].to_number<std::int64_t>());
      if (at >= bound_at && at - bound_at <= program.binding_ms) {
        winner = Candidate{bound_at,
                           {},
                           ClickReason::kHuman,
                           program.id,
                           json::value_to<std::string>(bd["referrer_id"]),
                           json::value_to<std::string>(bd["link_code"])};
        rule = "customer_binding";
        doc["click_id"] = bd["click_id"];
        explain["rule"] = "customer_binding: customer " + customer + " was bound to referrer " +
                          winner->referrer_id + " by conversion " +
                          json::value_to<std::string>(bd["event_id"]) + " and the binding lasts " +
                          std::to_string(program.binding_ms / 86'400'000) + " days";
      }
    }
  }

  if (!winner && program.probabilistic_ms > 0 && req.visitor_hash) {
    std::vector<Candidate> all;
    bool cut = false;
    auto m = match(store_,
                   {.visitor_hash = *req.visitor_hash,
                    .at_ms = at,
                    .window_ms = program.probabilistic_ms,
                    .model = model,
                    .program = program.id},
                   &all, &cut);
    if (m && *m) {
      winner = *m;
      rule = "probabilistic";
      for (const auto& cand : all) {
        candidates.push_back(candidate_json(cand, cand.id == winner->id));
      }
      candidates_cut = cut;
      explain["rule"] = "probabilistic: the same network address and browser clicked within " +
                        std::to_string(program.probabilistic_ms / 3'600'000) +
                        " hours; ranked below every deterministic match";
    }
  }

  explain["candidates"] = std::move(candidates);
  if (candidates_cut) {
    // More clicks were in the window than an explanation lists (matcher.h, kMaxCandidates).
    explain["candidates_cut"] = true;
  }
  doc["attributed"] = winner.has_value();
  doc["match"] = rule;
  doc["self_referral"] = false;
  if (!winner) {
    doc["referrer_id"] = nullptr;
    doc["link_code"] = nullptr;
    if (!doc.contains("click_id")) {
      doc["click_id"] = nullptr;
    }
    explain["rule"] = "none: no eligible click in the window and no bound customer";
    doc["explain"] = std::move(explain);
    return;
  }
  doc["referrer_id"] = winner->referrer_id;
  doc["link_code"] = winner->code;
  if (rule != "customer_binding") {
    doc["click_id"] = winner->id.to_string();
  }

  // Self-referral: recorded and flagged, never rewarded, never binding.
  auto referrer = catalog_.referrer(winner->referrer_id);
  bool self = referrer && !customer.empty() && referrer->external_id == customer;
  doc["self_referral"] = self;
  std::string binding = "none";
  if (!self && !customer.empty() && rule != "customer_binding") {
    std::string key = binding_key(program.id, customer);
    auto existing = b.get(store_, key);
    bool expired = true;
    if (existing) {
      json::object bd = json::parse(*existing).as_object();
      auto bound_at = static_cast<std::uint64_t>(bd["bound_at_ms"].to_number<std::int64_t>());
      expired = at > bound_at && at - bound_at > program.binding_ms;
    }
    if (!existing || expired) {
      b.put(key, json::serialize(json::object{{"referrer_id", winner->referrer_id},
                                              {"link_code", winner->code},
                                              {"click_id", doc["click_id"]},
                                              {"event_id", doc["event_id"]},
                                              {"bound_at_ms", at}}));
      binding = "created";
    } else {
      binding = "existing";
    }
  }
  explain["binding"] = binding;
  if (self) {
    explain["self_referral"] = "the customer id equals the referrer's own external id";
  }
  doc["explain"] = std::move(explain);
}

ConversionReply ConversionService::refund(Batch& b,
                                          const ConversionRequest& req,
                                          std::uint64_t at,
                                          json::object& doc) {
  std::string refund_of = text_field(req.body, "refund_of", 128, true);
  std::string orig_key = event_key(req.program, refund_of);
  auto orig_text = b.get(store_, orig_key);
  if (!orig_text) {
    reject("unknown_refund_of", "refund_of names no conversion of this program");
  }
  json::object orig = json::parse(*orig_text).as_object();
  if (orig["type"] != "sale") {
    reject("invalid_refund_of", "only a sale can be refunded");
  }
  std::int64_t sold = orig["amount_minor"].to_number<std::int64_t>();
  std::int64_t refunded =
      orig.contains("refunded_minor") ? orig["refunded_minor"].to_number<std::int64_t>() : 0;
  std::int64_t amount = doc["amount_minor"].is_null()
                            ? sold - refunded
                            : doc["amount_minor"].to_number<std::int64_t>();
  if (amount <= 0) {
    reject("invalid_amount", "a refund's amount_minor must be above zero");
  }
  if (amount > sold - refunded) {
    reject("refund_exceeds_sale", "the refund is larger than what remains of the sale (" +
                                      std::to_string(sold - refunded) + ")");
  }
  doc["amount_minor"] = amount;
  doc["refund_of"] = refund_of;
  for (const char* k : {"attributed", "referrer_id", "link_code", "click_id", "self_referral"}) {
    doc[k] = orig[k];
  }
  doc["match"] = "refund_of";
  doc["explain"] = json::object{{"rule", "refund_of: a refund follows the sale " + refund_of}};
  doc["rewards"] =
      ledger_.reverse(b, orig, amount, json::value_to<std::string>(doc["event_id"]), at);
  orig["refunded_minor"] = refunded + amount;
  b.put(orig_key, json::serialize(orig));
  std::string referrer =
      orig["referrer_id"].is_string() ? json::value_to<std::string>(orig["referrer_id"]) : "";
  b.add_stats(req.program, referrer, at, store::kStatRefunds, 1);
  b.add_stats(req.program, referrer, at, store::kStatRefundedMinor, amount);
  return store_doc(b, req, doc);
}

void ConversionService::add_to_totals(Batch& b,
                                      const links::ProgramView& program,
                                      std::int64_t revenue_minor,
                                      std::int64_t rewards_minor) {
  if (revenue_minor == 0 && rewards_minor == 0) {
    return;
  }
  std::string key = totals_key(program.id);
  std::int64_t revenue = 0;
  std::int64_t rewards = 0;
  if (auto text = b.get(store_, key)) {
    json::object t = json::parse(*text).as_object();
    revenue = t["revenue_minor"].to_number<std::int64_t>();
    rewards = t["rewards_minor"].to_number<std::int64_t>();
  } else {
    // Programs with conversions from before the totals were kept start from their counters.
    auto add = [&](std::uint32_t, const std::vector<std::int64_t>& v) {
      if (v.size() > store::kStatRewardsMinor) {
        revenue = saturating_add(revenue, v[store::kStatRevenueMinor]);
        rewards = saturating_add(rewards, v[store::kStatRewardsMinor]);
      }
    };
    std::vector<std::string> referrers{""};
    for (const auto& r : catalog_.referrers_of(program.id)) {
      referrers.push_back(r.id);
    }
    for (const auto& r : referrers) {
      if (store_.scan_stats(store::stats_prefix(program.id, r), 0,
                            std::numeric_limits<std::uint32_t>::max(), add)) {
        reject("storage", "counters could not be read", 503);
      }
    }
  }
  std::int64_t new_revenue = 0;
  std::int64_t new_rewards = 0;
  if (__builtin_add_overflow(revenue, revenue_minor, &new_revenue) ||
      __builtin_add_overflow(rewards, rewards_minor, &new_rewards) ||
      new_revenue > kMaxTotalMinor || new_rewards > kMaxTotalMinor) {
    reject("amount_overflow", "the program's lifetime sales or rewards would pass " +
                                  std::to_string(kMaxTotalMinor) + " minor units");
  }
  b.put(key, json::serialize(
                 json::object{{"revenue_minor", new_revenue}, {"rewards_minor", new_rewards}}));
}

// The event id a request is stored and answered under. Signups reported with the publishable
// key (from browsers, so from anyone) live apart, under "pk:" + their id: they can neither
// read nor take the id of a conversion the merchant reports with the secret key, which may not
// use that prefix. A publishable key may report signups only, checked before anything is read.
std::string ConversionService::stored_event_id(const ConversionRequest& req) {
  std::string event_id = text_field(req.body, "event_id", 128, true);
  if (req.publishable) {
    if (text_field(req.body, "type", 16, true) != "signup") {
      reject("forbidden_type", "a publishable key may only report signups", 403);
    }
    return std::string(kBrowserEventPrefix) + event_id;
  }
  if (event_id.starts_with(kBrowserEventPrefix)) {
    reject("invalid_field",
           "event ids starting with \"pk:\" are kept for signups reported with "
           "the publishable key");
  }
  return event_id;
}

ConversionReply ConversionService::store_doc(Batch& b,
                                             const ConversionRequest& req,
                                             json::object& doc) {
  std::string event_id = json::value_to<std::string>(doc["event_id"]);
  b.put(event_key(req.program, event_id), json::serialize(doc));
  b.put(event_index_key(event_id, req.program), "");
  json::object a = answer_of(doc);
  a["duplicate"] = false;
  return {201, json::serialize(a)};
}

ConversionReply ConversionService::handle_checked(Batch& b, ConversionRequest& req) {
  const json::object& in = req.body;
  std::string event_id = stored_event_id(req);
  if (auto existing = b.get(store_, event_key(req.program, event_id))) {
    json::object a = answer_of(json::parse(*existing).as_object());
    a["duplicate"] = true;
    return {200, json::serialize(a)};
  }
  auto snap = catalog_.snapshot();
  const links::ProgramView* program = snap->program(req.program);
  if (program == nullptr) {
    reject("unknown_program", "the key's program no longer exists", 404);
  }
  std::string type = text_field(in, "type", 16, true);
  if (type != "signup" && type != "sale" && type != "refund") {
    reject("invalid_type", "type must be signup, sale or refund");
  }
  auto amount = amount_field(in);
  std::string currency = text_field(in, "currency", 3, false);
  if (amount && *amount > 0 && currency.empty()) {
    reject("missing_currency", "amount_minor needs a currency");
  }
  if (!currency.empty() && currency != program->currency) {
    reject("currency_mismatch", "the program's currency is " + program->currency);
  }
  if (type == "sale" && !amount) {
    reject("missing_field", "a sale needs amount_minor");
  }
  std::uint64_t now = now_ms();
  std::uint64_t at = now;
  if (auto it = in.find("occurred_at"); it != in.end() && !it->value().is_null()) {
    // Given but empty is refused like any other text that is not a time, not taken as now.
    const json::value& v = it->value();
    auto parsed = v.is_string() ? parse_rfc3339_ms(v.get_string()) : std::nullopt;
    if (!parsed) {
      reject("invalid_time", "occurred_at must be an RFC 3339 time such as 2026-12-01T10:00:00Z");
    }
    if (*parsed > now + options_.max_future_skew_ms) {
      reject("time_in_future", "occurred_at is in the future");
    }
    at = *parsed;
  }

  json::object doc{{"event_id", event_id},
                   {"program", req.program},
                   {"type", type},
                   {"customer_id", text_field(in, "customer_id", 128, false)},
                   {"amount_minor", amount ? json::value(*amount) : json::value(nullptr)},
                   {"currency", program->currency},
                   {"occurred_at", format_rfc3339(at)},
                   {"received_at", format_rfc3339(now)},
                   {"rewards", json::array()}};
  if (type == "refund") {
    return refund(b, req, at, doc);
  }
  if (!amount) {
    doc["amount_minor"] = 0;
  }
  attribute(b, *program, req, at, doc);
  if (doc["attributed"].as_bool()) {
    b.emit(program->id, "conversion.attributed", answer_of(doc));
    // A signup reported from the browser (publishable key) is recorded, attributed and binds an
    // unbound customer, but earns nothing: anyone can send one, so rewards need the secret key.
    if (!doc["self_referral"].as_bool() && !req.publishable) {
      doc["rewards"] = ledger_.reward(b, *program, doc, at);
    }
  }
  std::int64_t rewarded = 0;
  for (const auto& e : doc["rewards"].as_array()) {
    if (e.at("kind").as_string() == "referrer") {
      rewarded += e.at("amount_minor").to_number<std::int64_t>();
    }
  }
  add_to_totals(b, *program, type == "sale" ? *amount : 0, rewarded);
  std::string referrer =
      doc["referrer_id"].is_string() ? json::value_to<std::string>(doc["referrer_id"]) : "";
  b.add_stats(req.program, referrer, at, type == "sale" ? store::kStatSales : store::kStatSignups,
              1);
  if (type == "sale") {
    b.add_stats(req.program, referrer, at, store::kStatRevenueMinor, *amount);
  }
  return store_doc(b, req, doc);
}

ConversionReply ConversionService::handle(Batch& b, ConversionRequest& req) {
  // A request refused part-way (amount_overflow comes after the rewards are written) takes
  // back what it added to the batch.
  Batch::Mark mark = b.mark();
  try {
    if (!options_.claim) {
      return handle_checked(b, req);
    }
    // Scale-out: the outcome counts only if this node wins the cluster-wide create-if-absent;
    // otherwise what this request added to the batch is taken back.
    ConversionReply r = handle_checked(b, req);
    if (r.status != 201) {
      return r;
    }
    std::string event_id = stored_event_id(req);
    // The recorded request carries the time this node gave the conversion, so that finishing it
    // after a crash (see ConversionOptions::claim) works it out exactly as answered.
    ConversionRequest recorded = req;
    if (!recorded.body.contains("occurred_at") || recorded.body.at("occurred_at").is_null()) {
      ErrorCode ec;
      json::value answer = json::parse(r.body, ec);
      if (!ec && answer.is_object() && answer.as_object().contains("occurred_at")) {
        recorded.body["occurred_at"] = answer.as_object().at("occurred_at");
      }
    }
    auto claimed = options_.claim(req.program, event_id, r.body, request_json(recorded));
    if (claimed && claimed->empty()) {
      return r;
    }
    b.rollback(mark);
    if (!claimed) {
      return error_body(503, "cluster_unavailable", "the conversion could not be recorded");
    }
    json::object a = json::parse(*claimed).as_object();
    a["duplicate"] = true;
    return {200, json::serialize(a)};
  } catch (const Reject& r) {
    b.rollback(mark);
    return error_body(r.status, r.code, r.message);
  } catch (const std::exception& e) {
    b.rollback(mark);
    // A stored document or rule that does not have the expected shape: a bug or a damaged
    // record. The request fails on its own; the thread and the batch go on.
    return error_body(500, "internal",
                      std::string("the conversion could not be processed: ") + e.what());
  }
}

ConversionReply ConversionService::explain(std::string_view event_id,
                                           std::string_view program) const {
  std::string chosen(program);
  if (chosen.empty()) {
    std::vector<std::string> programs;
    std::string prefix = event_index_key(event_id, "");
    store_.scan_docs(prefix, [&](std::string_view key, std::string_view) {
      programs.emplace_back(key.substr(prefix.size()));
      return programs.size() < 2;
    });
    if (programs.empty()) {
      return error_body(404, "not_found", "no conversion with this event_id");
    }
    if (programs.size() > 1) {
      return error_body(409, "ambiguous", "several programs hold this event_id: add ?program=");
    }
    chosen = programs[0];
  }
  auto doc = store_.get_doc(event_key(chosen, event_id));
  if (!doc) {
    return error_body(503, "storage", "storage could not be read");
  }
  if (!*doc) {
    return error_body(404, "not_found", "no conversion with this event_id in this program");
  }
  json::object d = json::parse(**doc).as_object();
  json::object out = answer_of(d);
  if (auto it = d.find("explain"); it != d.end()) {
    for (const auto& [k, v] : it->value().as_object()) {
      out[k] = v;
    }
  }
  out["followed"] = json::object{
      {"rewards", d["rewards"]},
      {"refunded_minor", d.contains("refunded_minor") ? d["refunded_minor"] : json::value(0)}};
  return {200, json::serialize(out)};
}

}  // namespace earnd::attribution
