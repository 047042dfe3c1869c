#pragma once

// Conversion intake: validation, exactly-once per (program, event id), matching to a click or a
// bound customer, the stored explanation, and report counters. One thread processes batches
// (the HTTP layer's conversion thread), so duplicates are decided without locks; each batch is
// one synced storage write, so a 201 is sent only for what is stored.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "earnd/common/click_id.h"

namespace earnd::links {
class Catalog;
struct ProgramView;
}  // namespace earnd::links

namespace earnd::store {
class Store;
}

namespace earnd::rewards {
class Ledger;
}

namespace earnd::webhooks {
class Outbox;
}

namespace earnd::attribution {

// Signups reported with the publishable key are stored and answered under this prefix and their
// event id (ConversionService::stored_event_id); secret-key event ids may not start with it.
inline constexpr std::string_view kBrowserEventPrefix = "pk:";

struct ConversionRequest {
  std::string program;       // resolved from the key by the caller
  boost::json::object body;  // the contract's fields
  bool publishable = false;  // came with the publishable key: signups only, kept apart, unpaid
  std::optional<std::uint64_t> visitor_hash;  // the browser's, for probabilistic matching
};

// A request as JSON, for the cluster's outcome record, and back (nullopt: not such a JSON).
std::string request_json(const ConversionRequest& req);
std::optional<ConversionRequest> request_from_json(std::string_view text);

// The docs key holding the time of the last conversion batch a cluster node committed: where
// its recovery of claimed but unwritten outcomes starts reading.
inline constexpr std::string_view kLastCommitKey = "cl/conv_commit_ms";

struct ConversionReply {
  unsigned status = 200;
  std::string body;  // JSON
};

struct ConversionOptions {
  bool sync = true;  // group durability
  std::uint64_t max_future_skew_ms = 5 * 60'000;
  // Scale-out mode only (empty otherwise). await_click: waits until a click named by a
  // conversion but made on another node is in the local index; true when it arrived.
  std::function<bool(const ClickId&)> await_click;
  // claim: the cluster-wide create-if-absent of a new outcome's answer, stored with the request
  // (request: the JSON of request_json()) so that the node can finish it after a crash.
  // nullopt: unreachable (the request answers 503 and writes nothing); "": this node created it
  // (now or in an earlier run whose write was lost); otherwise the answer stored by the first
  // writer (the request writes nothing and answers it as a duplicate).
  std::function<std::optional<std::string>(std::string_view program,
                                           std::string_view event_id,
                                           std::string_view answer,
                                           std::string_view request)>
      claim;
};

class ConversionService {
 public:
  // The store, catalog, ledger and outbox (which may be null: no webhooks) must outlive the
  // service.
  ConversionService(store::Store& store,
                    const links::Catalog& catalog,
                    rewards::Ledger& ledger,
                    webhooks::Outbox* outbox,
                    ConversionOptions options);

  // Processes requests in order as one unit: a later request sees the earlier ones (a repeat
  // in the same batch is a duplicate; a refund may name a sale of the same batch). Writes once;
  // when that write fails every reply becomes 503 and nothing is acknowledged. Not thread-safe:
  // call from one thread.
  std::vector<ConversionReply> process(std::vector<ConversionRequest>& batch);

  // Ledger changes that must be serialized with conversions; call on the same thread as
  // process(). Each is one storage write. They return an HTTP status and JSON body.
  std::size_t approve_due(std::uint64_t now_ms);
  std::pair<unsigned, std::string> create_payouts(std::string_view program);
  std::pair<unsigned, std::string> mark_paid(std::string_view payout_id);

  // The stored explanation of a conversion. program may be "" when only one program holds the
  // event id (409 when several do). Thread-safe.
  ConversionReply explain(std::string_view event_id, std::string_view program) const;

 private:
  struct Batch;
  ConversionReply handle(Batch& batch, ConversionRequest& req);
  ConversionReply handle_checked(Batch& batch, ConversionRequest& req);
  static std::string stored_event_id(const ConversionRequest& req);
  void attribute(Batch& batch,
                 const links::ProgramView& program,
                 const ConversionRequest& req,
                 std::uint64_t at,
                 boost::json::object& doc);
  ConversionReply refund(Batch& batch,
                         const ConversionRequest& req,
                         std::uint64_t at,
                         boost::json::object& doc);
  // Adds a conversion's sale amount and referrer rewards to the program's lifetime totals;
  // refuses it with amount_overflow when either would pass kMaxTotalMinor.
  void add_to_totals(Batch& batch,
                     const links::ProgramView& program,
                     std::int64_t revenue_minor,
                     std::int64_t rewards_minor);
  ConversionReply store_doc(Batch& batch, const ConversionRequest& req, boost::json::object& doc);

  // Writes the batch (synced per the options) and hands its webhook events to the outbox.
  [[nodiscard]] bool commit(Batch& batch);

  store::Store& store_;
  const links::Catalog& catalog_;
  rewards::Ledger& ledger_;
  webhooks::Outbox* outbox_;
  ConversionOptions options_;
};

}  // namespace earnd::attribution
