#pragma once

// The delivery document kept at wd/{id} in the docs family: one event for one program's
// webhook URL, its state and the log of its recent attempts. Only the delivery thread changes a
// document after it was staged.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

namespace earnd::webhooks {

inline constexpr std::string_view kKeyPrefix = "wd/";

// Attempts kept in a document; older ones are dropped first.
inline constexpr std::size_t kMaxAttemptsKept = 20;

enum class State { kPending = 0, kDelivered = 1, kFailed = 2 };

std::string_view state_name(State s) noexcept;
std::optional<State> parse_state(std::string_view name) noexcept;

struct AttemptLog {
  std::uint64_t at_ms = 0;
  unsigned status = 0;  // the HTTP status, or 0 when error says why there was none
  std::string error;
  std::uint64_t duration_ms = 0;
};

struct Delivery {
  std::string id;  // msg_…, also the webhook-id header on every attempt
  std::string program;
  std::string type;
  std::string url;   // the program's webhook_url when the event was staged
  std::string body;  // the exact bytes sent
  std::uint64_t created_ms = 0;
  State state = State::kPending;
  std::uint64_t next_attempt_ms = 0;  // meaningful while pending
  // Start of the current retry window (created_ms, or the time of the last redeliver); give-up
  // is measured from here and backoff restarts here.
  std::uint64_t retry_from_ms = 0;
  std::uint32_t tries = 0;          // attempts in the current window
  std::uint64_t attempt_count = 0;  // attempts ever
  std::string failure;              // why the state is failed
  std::vector<AttemptLog> attempts;
};

inline std::string delivery_key(std::string_view id) {
  std::string key(kKeyPrefix);
  key.append(id);
  return key;
}

// The stored form (JSON) and back. decode returns nullopt for anything that is not a delivery
// document; it never throws for bad input.
std::string encode(const Delivery& d);
std::optional<Delivery> decode(std::string_view text);

// The form GET /v1/webhooks/deliveries shows: times in RFC 3339, no body.
boost::json::object to_api_json(const Delivery& d);

}  // namespace earnd::webhooks
