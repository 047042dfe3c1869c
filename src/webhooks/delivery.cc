#include "delivery.h"

#include <boost/json.hpp>

#include "earnd/common/error.h"
#include "earnd/common/time.h"

namespace earnd::webhooks {
namespace {

namespace json = boost::json;

std::optional<std::string> get_string(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) {
    return std::nullopt;
  }
  return std::string(v->get_string());
}

// Unsigned numbers as stored: boost::json keeps small ones as int64 and large ones as uint64.
std::optional<std::uint64_t> get_u64(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) {
    return std::nullopt;
  }
  if (v->is_uint64()) {
    return v->get_uint64();
  }
  if (v->is_int64() && v->get_int64() >= 0) {
    return static_cast<std::uint64_t>(v->get_int64());
  }
  return std::nullopt;
}

json::object attempt_json(const AttemptLog& a, bool api_form) {
  json::object o;
  if (api_form) {
    o["at"] = format_rfc3339(a.at_ms);
  } else {
    o["at"] = a.at_ms;
  }
  if (a.status != 0) {
    o["status"] = a.status;
  }
  if (!a.error.empty()) {
    o["error"] = a.error;
  }
  o["duration_ms"] = a.duration_ms;
  return o;
}

std::optional<AttemptLog> parse_attempt(const json::value& v) {
  if (!v.is_object()) {
    return std::nullopt;
  }
  const json::object& o = v.get_object();
  AttemptLog a;
  a.at_ms = get_u64(o, "at").value_or(0);
  a.status = static_cast<unsigned>(get_u64(o, "status").value_or(0));
  a.error = get_string(o, "error").value_or("");
  a.duration_ms = get_u64(o, "duration_ms").value_or(0);
  return a;
}

}  // namespace

std::string_view state_name(State s) noexcept {
  switch (s) {
    case State::kPending:
      return "pending";
    case State::kDelivered:
      return "delivered";
    case State::kFailed:
      return "failed";
  }
  return "pending";
}

std::optional<State> parse_state(std::string_view name) noexcept {
  for (State s : {State::kPending, State::kDelivered, State::kFailed}) {
    if (state_name(s) == name) {
      return s;
    }
  }
  return std::nullopt;
}

std::string encode(const Delivery& d) {
  json::object o;
  o["id"] = d.id;
  o["program"] = d.program;
  o["type"] = d.type;
  o["url"] = d.url;
  o["body"] = d.body;
  o["created_ms"] = d.created_ms;
  o["state"] = state_name(d.state);
  o["next_attempt_ms"] = d.next_attempt_ms;
  o["retry_from_ms"] = d.retry_from_ms;
  o["tries"] = d.tries;
  o["attempt_count"] = d.attempt_count;
  if (!d.failure.empty()) {
    o["failure"] = d.failure;
  }
  json::array attempts;
  for (const AttemptLog& a : d.attempts) {
    attempts.push_back(attempt_json(a, false));
  }
  o["attempts"] = std::move(attempts);
  return json::serialize(o);
}

std::optional<Delivery> decode(std::string_view text) {
  ErrorCode ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    return std::nullopt;
  }
  const json::object& o = v.get_object();

  // The fields without which no attempt can be made.
  Delivery d;
  auto id = get_string(o, "id");
  auto program = get_string(o, "program");
  auto body = get_string(o, "body");
  auto state = parse_state(get_string(o, "state").value_or(""));
  auto created = get_u64(o, "created_ms");
  if (!id || !program || !body || !state || !created) {
    return std::nullopt;
  }
  d.id = std::move(*id);
  d.program = std::move(*program);
  d.body = std::move(*body);
  d.state = *state;
  d.created_ms = *created;

  d.type = get_string(o, "type").value_or("");
  d.url = get_string(o, "url").value_or("");
  d.next_attempt_ms = get_u64(o, "next_attempt_ms").value_or(d.created_ms);
  d.retry_from_ms = get_u64(o, "retry_from_ms").value_or(d.created_ms);
  d.tries = static_cast<std::uint32_t>(get_u64(o, "tries").value_or(0));
  d.attempt_count = get_u64(o, "attempt_count").value_or(0);
  d.failure = get_string(o, "failure").value_or("");
  if (const json::value* a = o.if_contains("attempts"); a != nullptr && a->is_array()) {
    for (const json::value& item : a->get_array()) {
      if (auto parsed = parse_attempt(item)) {
        d.attempts.push_back(std::move(*parsed));
      }
    }
  }
  return d;
}

json::object to_api_json(const Delivery& d) {
  json::object o;
  o["id"] = d.id;
  o["program"] = d.program;
  o["type"] = d.type;
  o["state"] = state_name(d.state);
  o["created_at"] = format_rfc3339(d.created_ms);
  json::array attempts;
  for (const AttemptLog& a : d.attempts) {
    attempts.push_back(attempt_json(a, true));
  }
  o["attempts"] = std::move(attempts);
  o["attempt_count"] = d.attempt_count;
  if (d.state == State::kPending) {
    o["next_attempt_at"] = format_rfc3339(d.next_attempt_ms);
  } else {
    o["next_attempt_at"] = nullptr;
  }
  if (!d.failure.empty()) {
    o["failure"] = d.failure;
  }
  return o;
}

}  // namespace earnd::webhooks
