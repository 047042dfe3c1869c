#include "earnd/links/catalog.h"

#include <algorithm>
#include <chrono>
#include <map>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <xxhash.h>

#include "earnd/common/secrets.h"
#include "earnd/common/text.h"
#include "earnd/log/log.h"
#include "earnd/store/store.h"

namespace json = boost::json;

namespace earnd::links {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A validation failure, carried out of the field readers as an exception inside this file only;
// every public function catches it and turns it into a 400 reply.
struct Invalid {
  std::string code;
  std::string message;
};

[[noreturn]] void invalid(std::string code, std::string message) {
  throw Invalid{std::move(code), std::move(message)};
}

const json::object& as_object(const json::value& v, const char* what) {
  if (!v.is_object()) {
    invalid("invalid_json", std::string(what) + " must be a JSON object");
  }
  return v.get_object();
}

std::optional<std::string> opt_string(const json::object& o, const char* key, std::size_t max) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    return std::nullopt;
  }
  if (!it->value().is_string() || it->value().get_string().size() > max) {
    invalid("invalid_field", std::string(key) + " must be a string of at most " +
                                 std::to_string(max) + " characters");
  }
  return std::string(it->value().get_string());
}

std::string req_string(const json::object& o, const char* key, std::size_t max) {
  auto v = opt_string(o, key, max);
  if (!v || v->empty()) {
    invalid("missing_field", std::string(key) + " is required");
  }
  return *v;
}

std::int64_t opt_int(
    const json::object& o, const char* key, std::int64_t def, std::int64_t lo, std::int64_t hi) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    return def;
  }
  const json::value& v = it->value();
  std::int64_t n = 0;
  if (v.is_int64()) {
    n = v.get_int64();
  } else if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(hi)) {
    n = static_cast<std::int64_t>(v.get_uint64());
  } else {
    invalid("invalid_field", std::string(key) + " must be an integer");
  }
  if (n < lo || n > hi) {
    invalid("invalid_field", std::string(key) + " must be between " + std::to_string(lo) + " and " +
                                 std::to_string(hi));
  }
  return n;
}

bool opt_bool(const json::object& o, const char* key, bool def) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    return def;
  }
  if (!it->value().is_bool()) {
    invalid("invalid_field", std::string(key) + " must be true or false");
  }
  return it->value().get_bool();
}

bool is_param_name(std::string_view s) {
  return !s.empty() && s.size() <= 32 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

std::vector<std::string> host_list(const json::object& o) {
  auto it = o.find("allowed_hosts");
  if (it == o.end() || !it->value().is_array() || it->value().get_array().empty()) {
    invalid("missing_field", "allowed_hosts must be a non-empty array of host names");
  }
  std::vector<std::string> hosts;
  for (const auto& h : it->value().get_array()) {
    if (!h.is_string() || h.get_string().empty() || h.get_string().size() > 253) {
      invalid("invalid_field", "allowed_hosts must hold host names");
    }
    hosts.push_back(lower(h.get_string()));
  }
  return hosts;
}

ParsedDestination checked_destination(std::string_view url, const std::vector<std::string>& hosts) {
  auto d = parse_destination(url, hosts);
  if (!d) {
    invalid("invalid_destination",
            std::string(destination_error_reason(diagnose_destination(url, hosts))));
  }
  return *d;
}

// Normalizes and checks a whole program object (new, or an existing one with a patch applied).
// Returns the object to store; secrets are carried over from `stored`.
json::object validate_program(const json::object& in, const Catalog::RulesValidator& rules_ok) {
  json::object p;
  std::string id = req_string(in, "id", 40);
  if (!is_valid_program_id(id)) {
    invalid("invalid_field", "id must match [a-z0-9-]{1,40}");
  }
  p["id"] = id;
  p["name"] = opt_string(in, "name", 200).value_or(id);
  std::string currency = req_string(in, "currency", 3);
  if (currency.size() != 3 ||
      !std::all_of(currency.begin(), currency.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
    invalid("invalid_field", "currency must be an ISO 4217 code such as USD");
  }
  p["currency"] = currency;
  auto hosts = host_list(in);
  json::array host_array;
  for (const auto& h : hosts) {
    host_array.emplace_back(h);
  }
  p["allowed_hosts"] = host_array;
  p["destination"] = checked_destination(req_string(in, "destination", 2048), hosts).normalized;
  if (auto fb = opt_string(in, "fallback_url", 2048); fb && !fb->empty()) {
    p["fallback_url"] = checked_destination(*fb, hosts).normalized;
  }

  json::object a;
  if (auto it = in.find("attribution"); it != in.end() && !it->value().is_null()) {
    a = as_object(it->value(), "attribution");
  }
  std::string model = opt_string(a, "model", 20).value_or("last_click");
  if (model != "last_click" && model != "first_click") {
    invalid("invalid_field", "attribution.model must be last_click or first_click");
  }
  json::object attribution;
  attribution["model"] = model;
  attribution["window_days"] = opt_int(a, "window_days", 30, 1, 3650);
  attribution["cookie_days"] = opt_int(a, "cookie_days", 30, 0, 3650);
  attribution["dedupe_minutes"] = opt_int(a, "dedupe_minutes", 60, 0, 525'600);
  attribution["probabilistic_hours"] = opt_int(a, "probabilistic_hours", 0, 0, 8760);
  attribution["binding_days"] = opt_int(a, "binding_days", 365, 0, 36500);
  p["attribution"] = attribution;

  if (auto it = in.find("rewards"); it != in.end() && !it->value().is_null()) {
    if (!it->value().is_array()) {
      invalid("invalid_field", "rewards must be an array");
    }
    if (rules_ok) {
      if (auto msg = rules_ok(it->value())) {
        invalid("invalid_rewards", *msg);
      }
    }
    p["rewards"] = it->value();
  } else {
    p["rewards"] = json::array();
  }
  p["hold_days"] = opt_int(in, "hold_days", 30, 0, 3650);
  if (auto w = opt_string(in, "webhook_url", 2048); w && !w->empty()) {
    if (!w->starts_with("https://") && !w->starts_with("http://")) {
      invalid("invalid_field", "webhook_url must be an http or https URL");
    }
    p["webhook_url"] = *w;
  }
  p["deep_links"] = opt_bool(in, "deep_links", false);
  for (const char* key : {"ref_param", "click_param"}) {
    std::string def = std::string(key) == "ref_param" ? "ref" : "earnd_cid";
    std::string v = opt_string(in, key, 32).value_or(def);
    if (!is_param_name(v)) {
      invalid("invalid_field", std::string(key) + " must match [A-Za-z0-9_.-]{1,32}");
    }
    p[key] = v;
  }
  if (p["ref_param"] == p["click_param"]) {
    invalid("invalid_field", "ref_param and click_param must differ");
  }
  p["payout_minimum_minor"] = opt_int(in, "payout_minimum_minor", 0, 0, 1'000'000'000'000);
  return p;
}

std::vector<std::string> program_hosts(const json::object& p) {
  std::vector<std::string> hosts;
  for (const auto& h : p.at("allowed_hosts").get_array()) {
    hosts.push_back(json::value_to<std::string>(h));
  }
  return hosts;
}

std::shared_ptr<const ProgramView> make_view(const json::object& p) {
  auto v = std::make_shared<ProgramView>();
  v->id = json::value_to<std::string>(p.at("id"));
  v->currency = json::value_to<std::string>(p.at("currency"));
  v->allowed_hosts = program_hosts(p);
  auto d = parse_destination(p.at("destination").get_string(), v->allowed_hosts);
  if (d) {
    v->destination = *d;
  }
  v->deep_links = p.at("deep_links").get_bool();
  v->ref_param = json::value_to<std::string>(p.at("ref_param"));
  v->click_param = json::value_to<std::string>(p.at("click_param"));
  if (auto it = p.find("fallback_url"); it != p.end()) {
    v->fallback_url = json::value_to<std::string>(it->value());
  }
  const auto& a = p.at("attribution").get_object();
  v->cookie_max_age_s =
      static_cast<std::uint64_t>(a.at("cookie_days").to_number<std::int64_t>()) * 86400;
  v->dedupe_ms =
      static_cast<std::uint64_t>(a.at("dedupe_minutes").to_number<std::int64_t>()) * 60'000;
  v->model = json::value_to<std::string>(a.at("model"));
  v->window_days = static_cast<std::uint32_t>(a.at("window_days").to_number<std::int64_t>());
  v->binding_ms =
      static_cast<std::uint64_t>(a.at("binding_days").to_number<std::int64_t>()) * 86'400'000;
  v->probabilistic_ms =
      static_cast<std::uint64_t>(a.at("probabilistic_hours").to_number<std::int64_t>()) * 3'600'000;
  if (auto it = p.find("publishable_key"); it != p.end() && it->value().is_string()) {
    v->publishable_key = json::value_to<std::string>(it->value());
  }
  if (auto it = p.find("webhook_url"); it != p.end() && it->value().is_string()) {
    v->webhook_url = json::value_to<std::string>(it->value());
  }
  if (auto it = p.find("webhook_secret"); it != p.end() && it->value().is_string()) {
    v->webhook_secret = json::value_to<std::string>(it->value());
  }
  v->hold_days = static_cast<std::uint32_t>(p.at("hold_days").to_number<std::int64_t>());
  v->payout_minimum_minor = p.at("payout_minimum_minor").to_number<std::int64_t>();
  v->rewards_json = json::serialize(p.at("rewards"));
  return v;
}

json::object public_program(json::object p) {
  p.erase("program_key_sha256");
  p.erase("webhook_secret");
  return p;
}

json::object public_link(const json::object& l, const std::string& base) {
  json::object out = l;
  out["url"] = base + "/r/" + json::value_to<std::string>(l.at("code"));
  return out;
}

}  // namespace

std::size_t StringHash::operator()(std::string_view s) const noexcept {
  return XXH3_64bits(s.data(), s.size());
}

const ProgramView* Snapshot::program(std::string_view id) const noexcept {
  auto it = programs.find(id);
  return it == programs.end() ? nullptr : it->second.get();
}

const LinkView* Snapshot::find(std::string_view code) const noexcept {
  char buf[32];
  if (code.size() > sizeof(buf)) {
    return nullptr;
  }
  for (std::size_t i = 0; i < code.size(); ++i) {
    buf[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(code[i])));
  }
  auto it = links.find(std::string_view(buf, code.size()));
  return it == links.end() ? nullptr : &it->second;
}

AdminReply error_reply(unsigned status, std::string_view code, std::string_view message) {
  json::object err;
  err["code"] = code;
  err["message"] = message;
  json::object body;
  body["error"] = err;
  return {status, body};
}

bool is_valid_code(std::string_view code) noexcept {
  return code.size() >= 3 && code.size() <= 32 && std::all_of(code.begin(), code.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
         });
}

bool is_valid_program_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= 40 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

struct Catalog::State {
  std::map<std::string, json::object, std::less<>> programs;       // id -> stored program
  std::map<std::string, json::object, std::less<>> referrers;      // id -> referrer
  std::map<std::string, json::object, std::less<>> links;          // lower-case code -> link
  std::map<std::string, std::string, std::less<>> key_index;       // sha256(program_key) -> id
  std::map<std::string, std::string, std::less<>> external_index;  // program/external -> id
};

Catalog::Catalog(store::Store& store, std::string public_base_url)
    : store_(store),
      public_base_url_(std::move(public_base_url)),
      state_(std::make_unique<State>()) {
  load();
  publish();
}

Catalog::~Catalog() = default;

void Catalog::load() {
  auto read_all = [&](std::string_view prefix, auto&& on_object) {
    store_.scan_meta(prefix, [&](std::string_view key, std::string_view value) {
      ErrorCode ec;
      json::value v = json::parse(value, ec);
      if (ec || !v.is_object()) {
        throw StartupError("links: corrupt record " + std::string(key));
      }
      on_object(std::string(key.substr(prefix.size())), std::move(v.get_object()));
      return true;
    });
  };
  read_all("p/", [&](std::string id, json::object o) {
    state_->key_index[json::value_to<std::string>(o.at("program_key_sha256"))] = id;
    state_->programs[id] = std::move(o);
  });
  read_all("r/", [&](std::string id, json::object o) {
    state_->external_index[json::value_to<std::string>(o.at("program")) + "/" +
                           json::value_to<std::string>(o.at("external_id"))] = id;
    state_->referrers[id] = std::move(o);
  });
  read_all("l/", [&](std::string code, json::object o) { state_->links[code] = std::move(o); });
}

// LIMIT: each change rebuilds the whole snapshot, O(links). Fine to ~100k links; a catalog of
// millions needs a persistent (structurally shared) map so one change copies only a path.
void Catalog::publish() {
  auto snap = std::make_shared<Snapshot>();
  std::map<std::string, std::shared_ptr<const ProgramView>, std::less<>> views;
  for (const auto& [id, p] : state_->programs) {
    views[id] = make_view(p);
    snap->programs.emplace(id, views[id]);
  }
  for (const auto& [code, l] : state_->links) {
    LinkView v;
    v.code = json::value_to<std::string>(l.at("code"));
    v.referrer_id = json::value_to<std::string>(l.at("referrer_id"));
    v.disabled = l.at("disabled").get_bool();
    auto pit = views.find(l.at("program").get_string());
    if (pit == views.end()) {
      continue;
    }
    v.program = pit->second;
    if (auto d = l.find("destination"); d != l.end() && d->value().is_string()) {
      auto parsed = parse_destination(d->value().get_string(), v.program->allowed_hosts);
      if (parsed) {
        v.destination = *parsed;
      }
    }
    snap->links.emplace(code, std::move(v));
  }
  snap->version = version_.load(std::memory_order_relaxed) + 1;
  std::atomic_store_explicit(&published_, std::shared_ptr<const Snapshot>(std::move(snap)),
                             std::memory_order_release);
  // Pairs with the acquire load in version(): a reader that sees the new version then loads the
  // snapshot published above.
  version_.fetch_add(1, std::memory_order_release);
}

ErrorCode Catalog::write_meta(const std::string& key, const std::string& value) {
  auto ec = store_.put_meta(key, value);
  if (!ec && meta_hook_) {
    meta_hook_({{key, value}});
  }
  return ec;
}

ErrorCode Catalog::write_meta_many(
    const std::vector<std::pair<std::string, std::string>>& records) {
  auto ec = store_.put_meta_many(records);
  if (!ec && meta_hook_) {
    meta_hook_(records);
  }
  return ec;
}

std::size_t Catalog::apply_replicated(
    const std::vector<std::pair<std::string, std::string>>& records) {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, std::string>> changed;
  for (const auto& [key, value] : records) {
    if (!key.starts_with("p/") && !key.starts_with("r/") && !key.starts_with("l/")) {
      continue;  // only the catalog's own records travel
    }
    auto local = store_.get_meta(key);
    if (local && *local && **local == value) {
      continue;
    }
    changed.emplace_back(key, value);
  }
  if (changed.empty()) {
    return 0;
  }
  if (store_.put_meta_many(changed)) {
    log::get("links")->error("event=replicated_meta_write_failed records={}", changed.size());
    return 0;
  }
  auto fresh = std::make_unique<State>();
  std::swap(state_, fresh);
  try {
    load();
  } catch (const std::exception& e) {
    log::get("links")->error("event=replicated_meta_load_failed error=\"{}\"", e.what());
    std::swap(state_, fresh);
    return 0;
  }
  publish();
  return changed.size();
}

std::shared_ptr<const Snapshot> Catalog::snapshot() const {
  return std::atomic_load_explicit(&published_, std::memory_order_acquire);
}

AdminReply Catalog::create_program(const json::value& body) {
  try {
    json::object p = validate_program(as_object(body, "the body"), rules_validator_);
    std::lock_guard lock(mutex_);
    std::string id = json::value_to<std::string>(p["id"]);
    if (state_->programs.count(id) != 0) {
      return error_reply(409, "program_exists", "a program with this id exists");
    }
    std::string program_key = random_token("sk_", 32);
    std::string publishable_key = random_token("pk_", 24);
    std::string webhook_secret = "whsec_" + random_base64(24);
    p["program_key_sha256"] = sha256_hex(program_key);
    p["publishable_key"] = publishable_key;
    p["webhook_secret"] = webhook_secret;
    p["created_ms"] = now_ms();
    if (auto ec = write_meta("p/" + id, json::serialize(p))) {
      return error_reply(503, "storage", "the program could not be stored");
    }
    state_->key_index[sha256_hex(program_key)] = id;
    state_->programs[id] = p;
    publish();
    json::object out;
    out["id"] = id;
    out["program_key"] = program_key;
    out["publishable_key"] = publishable_key;
    out["webhook_secret"] = webhook_secret;
    return {201, out};
  } catch (const Invalid& e) {
    return error_reply(400, e.code, e.message);
  }
}

AdminReply Catalog::get_program(std::string_view id) const {
  std::lock_guard lock(mutex_);
  auto it = state_->programs.find(id);
  if (it == state_->programs.end()) {
    return error_reply(404, "not_found", "no such program");
  }
  return {200, public_program(it->second)};
}

AdminReply Catalog::patch_program(std::string_view id, const json::value& body) {
  try {
    const json::object& patch = as_object(body, "the body");
    std::lock_guard lock(mutex_);
    auto it = state_->programs.find(id);
    if (it == state_->programs.end()) {
      return error_reply(404, "not_found", "no such program");
    }
    json::object merged = it->second;
    for (const auto& [k, v] : patch) {
      if (k == "id" || k == "currency") {
        if (v != merged[k]) {
          return error_reply(400, "immutable_field", std::string(k) + " cannot be changed");
        }
        continue;
      }
      merged[k] = v;
    }
    json::object p = validate_program(merged, rules_validator_);
    for (const char* k :
         {"program_key_sha256", "publishable_key", "webhook_secret", "created_ms"}) {
      p[k] = it->second.at(k);
    }
    p["updated_ms"] = now_ms();
    if (write_meta("p/" + std::string(id), json::serialize(p))) {
      return error_reply(503, "storage", "the program could not be stored");
    }
    it->second = p;
    publish();
    return {200, public_program(p)};
  } catch (const Invalid& e) {
    return error_reply(400, e.code, e.message);
  }
}

AdminReply Catalog::rotate_keys(std::string_view id) {
  std::lock_guard lock(mutex_);
  auto it = state_->programs.find(id);
  if (it == state_->programs.end()) {
    return error_reply(404, "not_found", "no such program");
  }
  json::object p = it->second;
  std::string program_key = random_token("sk_", 32);
  std::string publishable_key = random_token("pk_", 24);
  std::string old_hash = json::value_to<std::string>(p["program_key_sha256"]);
  p["program_key_sha256"] = sha256_hex(program_key);
  p["publishable_key"] = publishable_key;
  if (write_meta("p/" + std::string(id), json::serialize(p))) {
    return error_reply(503, "storage", "the program could not be stored");
  }
  state_->key_index.erase(old_hash);
  state_->key_index[sha256_hex(program_key)] = std::string(id);
  it->second = p;
  publish();
  json::object out;
  out["id"] = std::string(id);
  out["program_key"] = program_key;
  out["publishable_key"] = publishable_key;
  out["webhook_secret"] = p["webhook_secret"];
  return {200, out};
}

AdminReply Catalog::create_referrer(std::string_view program, const json::value& body) {
  try {
    const json::object& in = as_object(body, "the body");
    std::string external_id = req_string(in, "external_id", 128);
    // As event and customer ids: it is shown in reports, CSV files and logs.
    if (std::any_of(external_id.begin(), external_id.end(),
                    [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
      invalid("invalid_field", "external_id must not contain control characters");
    }
    std::string name = opt_string(in, "name", 200).value_or("");
    std::optional<std::string> code = opt_string(in, "code", 32);
    std::lock_guard lock(mutex_);
    if (state_->programs.count(program) == 0) {
      return error_reply(404, "not_found", "no such program");
    }
    std::string ext_key = std::string(program) + "/" + external_id;
    if (auto it = state_->external_index.find(ext_key); it != state_->external_index.end()) {
      auto r = error_reply(409, "referrer_exists", "a referrer with this external_id exists");
      r.body.as_object()["id"] = it->second;
      return r;
    }
    if (code && !code->empty()) {
      if (!is_valid_code(*code)) {
        return error_reply(400, "invalid_code", "code must match [A-Za-z0-9_-]{3,32}");
      }
      if (state_->links.count(lower(*code)) != 0) {
        return error_reply(409, "code_taken", "this code is already in use");
      }
    }
    std::string id = random_token("rf_", 12);
    json::object r;
    r["id"] = id;
    r["program"] = program;
    r["external_id"] = external_id;
    r["name"] = name;
    r["created_ms"] = now_ms();
    if (write_meta("r/" + id, json::serialize(r))) {
      return error_reply(503, "storage", "the referrer could not be stored");
    }
    state_->referrers[id] = r;
    state_->external_index[ext_key] = id;
    AdminReply link = add_link(std::string(program), id, code.value_or(""), nullptr);
    if (link.status != 201) {
      return link;
    }
    json::object out;
    out["id"] = id;
    out["external_id"] = external_id;
    out["code"] = link.body.at("code");
    out["url"] = link.body.at("url");
    if (event_hook_) {
      json::object data = out;
      data["name"] = name;
      data["program"] = program;
      event_hook_(std::string(program), "referrer.enrolled", std::move(data));
    }
    return {201, out};
  } catch (const Invalid& e) {
    return error_reply(400, e.code, e.message);
  }
}

// Requires: mutex_ held.
AdminReply Catalog::add_link(const std::string& program,
                             const std::string& referrer_id,
                             std::string code,
                             const json::value* destination) {
  if (code.empty()) {
    do {
      code = random_token("", 8);
    } while (state_->links.count(code) != 0);
  } else if (!is_valid_code(code)) {
    return error_reply(400, "invalid_code", "code must match [A-Za-z0-9_-]{3,32}");
  }
  std::string key = lower(code);
  if (state_->links.count(key) != 0) {
    return error_reply(409, "code_taken", "this code is already in use");
  }
  json::object l;
  l["code"] = code;
  l["program"] = program;
  l["referrer_id"] = referrer_id;
  l["disabled"] = false;
  if (destination != nullptr && !destination->is_null()) {
    if (!destination->is_string()) {
      return error_reply(400, "invalid_destination", "destination must be a URL string");
    }
    auto hosts = program_hosts(state_->programs.at(program));
    l["destination"] = checked_destination(destination->get_string(), hosts).normalized;
  }
  l["created_ms"] = now_ms();
  if (write_meta("l/" + key, json::serialize(l))) {
    return error_reply(503, "storage", "the link could not be stored");
  }
  state_->links[key] = l;
  publish();
  return {201, public_link(l, public_base_url_)};
}

AdminReply Catalog::create_link(const json::value& body) {
  try {
    const json::object& in = as_object(body, "the body");
    std::string program = req_string(in, "program", 40);
    std::string referrer_id = req_string(in, "referrer_id", 64);
    std::string code = opt_string(in, "code", 32).value_or("");
    const json::value* dest = in.if_contains("destination");
    std::lock_guard lock(mutex_);
    auto r = state_->referrers.find(referrer_id);
    if (state_->programs.count(program) == 0 || r == state_->referrers.end() ||
        r->second.at("program").get_string() != program) {
      return error_reply(404, "not_found", "no such program or referrer in that program");
    }
    return add_link(program, referrer_id, code, dest);
  } catch (const Invalid& e) {
    return error_reply(400, e.code, e.message);
  }
}

AdminReply Catalog::list_links(std::string_view program, std::string_view referrer_id) const {
  std::lock_guard lock(mutex_);
  json::array links;
  for (const auto& [code, l] : state_->links) {
    if ((!program.empty() && l.at("program").get_string() != program) ||
        (!referrer_id.empty() && l.at("referrer_id").get_string() != referrer_id)) {
      continue;
    }
    links.push_back(public_link(l, public_base_url_));
  }
  json::object out;
  out["links"] = std::move(links);
  return {200, out};
}

AdminReply Catalog::patch_link(std::string_view code, const json::value& body) {
  try {
    const json::object& in = as_object(body, "the body");
    std::lock_guard lock(mutex_);
    auto it = state_->links.find(lower(code));
    if (it == state_->links.end()) {
      return error_reply(404, "not_found", "no such link");
    }
    json::object l = it->second;
    l["disabled"] = opt_bool(in, "disabled", l.at("disabled").get_bool());
    if (const json::value* d = in.if_contains("destination")) {
      if (d->is_null()) {
        l.erase("destination");
      } else if (!d->is_string()) {
        return error_reply(400, "invalid_destination", "destination must be a URL string");
      } else {
        auto hosts =
            program_hosts(state_->programs.at(json::value_to<std::string>(l.at("program"))));
        l["destination"] = checked_destination(d->get_string(), hosts).normalized;
      }
    }
    l["updated_ms"] = now_ms();
    if (write_meta("l/" + it->first, json::serialize(l))) {
      return error_reply(503, "storage", "the link could not be stored");
    }
    it->second = l;
    publish();
    return {200, public_link(l, public_base_url_)};
  } catch (const Invalid& e) {
    return error_reply(400, e.code, e.message);
  }
}

void Catalog::set_public_base_url(std::string url) {
  std::lock_guard lock(mutex_);
  public_base_url_ = std::move(url);
}

std::string Catalog::public_base_url() const {
  std::lock_guard lock(mutex_);
  return public_base_url_;
}

std::optional<std::string> Catalog::program_for_key(std::string_view key) const {
  std::string h = sha256_hex(key);
  std::lock_guard lock(mutex_);
  auto it = state_->key_index.find(h);
  if (it == state_->key_index.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::optional<std::string> Catalog::program_for_publishable_key(std::string_view key) const {
  std::lock_guard lock(mutex_);
  for (const auto& [id, p] : state_->programs) {
    auto it = p.find("publishable_key");
    if (it != p.end() && it->value().is_string() &&
        constant_time_equal(it->value().get_string(), key)) {
      return id;
    }
  }
  return std::nullopt;
}

namespace {

ReferrerInfo info_of(const json::object& r) {
  ReferrerInfo info;
  info.id = json::value_to<std::string>(r.at("id"));
  info.program = json::value_to<std::string>(r.at("program"));
  info.external_id = json::value_to<std::string>(r.at("external_id"));
  info.name = json::value_to<std::string>(r.at("name"));
  return info;
}

}  // namespace

std::optional<ReferrerInfo> Catalog::referrer(std::string_view id) const {
  std::lock_guard lock(mutex_);
  auto it = state_->referrers.find(id);
  if (it == state_->referrers.end()) {
    return std::nullopt;
  }
  ReferrerInfo info = info_of(it->second);
  for (const auto& [code, l] : state_->links) {
    if (l.at("referrer_id").get_string() == id) {
      info.codes.push_back(json::value_to<std::string>(l.at("code")));
    }
  }
  return info;
}

std::vector<ReferrerInfo> Catalog::referrers_of(std::string_view program) const {
  std::lock_guard lock(mutex_);
  std::vector<ReferrerInfo> out;
  std::map<std::string, std::size_t, std::less<>> index;
  for (const auto& [id, r] : state_->referrers) {
    if (program.empty() || r.at("program").get_string() == program) {
      index[id] = out.size();
      out.push_back(info_of(r));
    }
  }
  for (const auto& [code, l] : state_->links) {
    auto it = index.find(l.at("referrer_id").get_string());
    if (it != index.end()) {
      out[it->second].codes.push_back(json::value_to<std::string>(l.at("code")));
    }
  }
  return out;
}

Result<EnsureLinksResult> Catalog::ensure_links(std::string_view program,
                                                std::span<const LinkSpec> links) {
  std::lock_guard lock(mutex_);
  if (state_->programs.count(program) == 0) {
    return make_error_code(Errc::kNotFound);
  }

  // Build every new record first and write them as one batch; the state changes only after the
  // write succeeded.
  EnsureLinksResult result;
  std::map<std::string, json::object, std::less<>> new_referrers;  // id -> referrer
  std::map<std::string, std::string, std::less<>> new_external;    // program/external -> id
  std::map<std::string, json::object, std::less<>> new_links;      // lower-case code -> link
  std::vector<std::pair<std::string, std::string>> writes;
  std::int64_t created = now_ms();
  for (const LinkSpec& spec : links) {
    if (!is_valid_code(spec.code) || spec.external_id.empty() || spec.external_id.size() > 128 ||
        !is_printable_utf8(spec.external_id)) {
      ++result.invalid;
      continue;
    }
    std::string key = lower(spec.code);
    if (state_->links.count(key) != 0 || new_links.count(key) != 0) {
      continue;
    }

    std::string ext_key = std::string(program) + "/" + spec.external_id;
    std::string referrer_id;
    if (auto it = state_->external_index.find(ext_key); it != state_->external_index.end()) {
      referrer_id = it->second;
    } else if (auto nit = new_external.find(ext_key); nit != new_external.end()) {
      referrer_id = nit->second;
    } else {
      // Derived from (program, external id), so two nodes importing parts of one file at once
      // (scale-out mode) make the same referrer, not two; random only after a collision.
      referrer_id = fmt::format("rf_{:012x}", XXH3_64bits(ext_key.data(), ext_key.size()) >> 16);
      while (state_->referrers.count(referrer_id) != 0 || new_referrers.count(referrer_id) != 0) {
        referrer_id = random_token("rf_", 12);
      }
      json::object r;
      r["id"] = referrer_id;
      r["program"] = program;
      r["external_id"] = spec.external_id;
      r["name"] = "";
      r["created_ms"] = created;
      writes.emplace_back("r/" + referrer_id, json::serialize(r));
      new_referrers.emplace(referrer_id, std::move(r));
      new_external.emplace(ext_key, referrer_id);
    }

    json::object l;
    l["code"] = spec.code;
    l["program"] = program;
    l["referrer_id"] = referrer_id;
    l["disabled"] = false;
    l["created_ms"] = created;
    writes.emplace_back("l/" + key, json::serialize(l));
    new_links.emplace(std::move(key), std::move(l));
  }
  if (writes.empty()) {
    return result;
  }
  if (auto ec = write_meta_many(writes)) {
    return ec;
  }

  result.referrers_created = new_referrers.size();
  result.links_created = new_links.size();
  state_->referrers.merge(new_referrers);
  state_->external_index.merge(new_external);
  state_->links.merge(new_links);
  publish();
  return result;
}

std::optional<std::string> Catalog::referrer_external_id(std::string_view referrer_id) const {
  std::lock_guard lock(mutex_);
  auto it = state_->referrers.find(referrer_id);
  if (it == state_->referrers.end()) {
    return std::nullopt;
  }
  return json::value_to<std::string>(it->second.at("external_id"));
}

std::map<std::string, std::string, std::less<>> external_ids(const store::Store& store) {
  std::map<std::string, std::string, std::less<>> ids;
  store.scan_meta("r/", [&](std::string_view key, std::string_view value) {
    boost::system::error_code ec;
    auto v = boost::json::parse(value, ec);
    if (!ec && v.is_object()) {
      if (const auto* ext = v.as_object().if_contains("external_id"); ext && ext->is_string()) {
        ids.emplace(key.substr(2), std::string(ext->get_string()));
      }
    }
    return true;
  });
  return ids;
}

}  // namespace earnd::links
