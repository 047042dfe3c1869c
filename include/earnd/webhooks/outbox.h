#pragma once

// Funnel webhooks: a durable outbox in the store's docs family and a delivery thread with an
// asynchronous Beast client (HTTP and HTTPS). Events are staged into the same storage batch as
// the change that caused them, so an event exists exactly when its change does; delivery is
// at least once, signed with the Standard Webhooks scheme, retried with exponential backoff and
// jitter for at least 24 hours, and survives restarts. Nothing here runs on the I/O threads.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>

#include "earnd/common/error.h"
#include "earnd/store/store.h"

namespace earnd::links {
class Catalog;
}

namespace earnd::webhooks {

struct OutboxOptions {
  bool allow_private = false;              // EARND_WEBHOOKS_ALLOW_PRIVATE=1 or the config key
  std::uint64_t first_retry_ms = 1'000;    // backoff base; doubles per attempt, with jitter
  std::uint64_t max_retry_ms = 3'600'000;  // cap of one backoff step
  std::uint64_t give_up_after_ms = 26ull * 3'600'000;  // at least 24 hours of retries
  std::uint32_t timeout_ms = 10'000;                   // connect + request + response, per attempt
  std::uint32_t max_in_flight = 16;                    // concurrent deliveries
};

struct Event {
  std::string program;
  std::string type;  // referrer.enrolled, click.first, conversion.attributed, reward.*, payout.*
  boost::json::object data;
};

// Counters for /metrics and docs/benchmarks.md.
struct OutboxStats {
  std::uint64_t delivered = 0;
  std::uint64_t attempts = 0;
  std::uint64_t failed_attempts = 0;
  std::uint64_t given_up = 0;  // deliveries that ended failed: given up, or refused for good
  std::uint64_t pending = 0;   // deliveries waiting for an attempt or in one, now
};

class Outbox {
 public:
  // The store and catalog must outlive the outbox. Reads every delivery document into an
  // in-memory index (startup; O(deliveries stored)); start() schedules the pending ones.
  Outbox(store::Store& store, const links::Catalog& catalog, OutboxOptions options);
  ~Outbox();  // stops the delivery thread

  // Adds one delivery document per event whose program has a webhook URL to batch, and returns
  // their ids (msg_…). Call committed(ids) once the batch is written. Thread-safe; no I/O.
  std::vector<std::string> stage(store::Store::DocBatch& batch, const std::vector<Event>& events);

  // Tells the delivery thread that staged deliveries are stored. Thread-safe.
  void committed(const std::vector<std::string>& ids);

  // stage + a synced write + committed, for events not tied to another write.
  [[nodiscard]] ErrorCode emit(const std::vector<Event>& events);

  // Starts / stops the delivery thread. stop() abandons attempts in flight; they are retried
  // after the next start. Ids committed or redelivered while stopped wait for the next start.
  // Call start and stop from one thread, not concurrently with each other.
  void start();
  void stop();

  // GET /v1/webhooks/deliveries?program=&status=&page=&per_page= (JSON body) and
  // POST /v1/webhooks/deliveries/{id}/redeliver. Return an HTTP status and JSON body.
  // list: newest first; "" matches any program or status; page from 1, per_page 1..100 (0 means
  // 20); 400 for an unknown status. redeliver: 404 for an unknown id, else 202 and the delivery
  // is attempted again at once with a fresh retry window (after an attempt in flight ends).
  // Both are thread-safe and read the store; neither waits for the delivery thread.
  std::pair<unsigned, std::string> list(std::string_view program,
                                        std::string_view status,
                                        std::size_t page,
                                        std::size_t per_page) const;
  std::pair<unsigned, std::string> redeliver(std::string_view id);

  OutboxStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The Standard Webhooks signature header value: "v1," + base64(HMAC-SHA256(key, id.ts.body))
// where key is the base64-decoded part of secret after "whsec_" (a secret in another form is
// used as raw bytes). Thread-safe; allocates.
std::string sign(std::string_view secret,
                 std::string_view id,
                 std::uint64_t timestamp_s,
                 std::string_view body);

}  // namespace earnd::webhooks
