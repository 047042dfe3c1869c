#pragma once

// Conversion intake: validation, exactly-once per (program, event id), matching to a click or a
// bound customer, the stored explanation, and report counters. One thread processes batches
// (the HTTP layer's conversion thread), so duplicates are decided without locks; each batch is
// one synced storage write, so a 201 is sent only for what is stored.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

namespace earnd::links {
class Catalog;
struct ProgramView;
}  // namespace earnd::links

namespace earnd::store {
class Store;
}

namespace earnd::attribution {

// Indexes of the per-(program, referrer, 15-minute bucket) counters in the stats family.
enum StatIndex : int {
  kStatSignups = 0,
  kStatSales = 1,
  kStatRevenueMinor = 2,
  kStatRefunds = 3,
  kStatRefundedMinor = 4,
  kStatRewardsMinor = 5,
  kStatCount = 6,
};

// The stats key prefix for a program and referrer ("" for unattributed): program \0 referrer \0.
std::string stats_prefix(std::string_view program, std::string_view referrer_id);

struct ConversionRequest {
  std::string program;                        // resolved from the key by the caller
  boost::json::object body;                   // the contract's fields
  bool publishable = false;                   // came with the publishable key: signups only
  std::optional<std::uint64_t> visitor_hash;  // the browser's, for probabilistic matching
};

struct ConversionReply {
  unsigned status = 200;
  std::string body;  // JSON
};

struct ConversionOptions {
  bool sync = true;                  // group durability
  std::uint64_t max_future_skew_ms = 5 * 60'000;
};

class ConversionService {
 public:
  // The store and catalog must outlive the service.
  ConversionService(store::Store& store, const links::Catalog& catalog, ConversionOptions options);

  // Processes requests in order as one unit: a later request sees the earlier ones (a repeat
  // in the same batch is a duplicate; a refund may name a sale of the same batch). Writes once;
  // when that write fails every reply becomes 503 and nothing is acknowledged. Not thread-safe:
  // call from one thread.
  std::vector<ConversionReply> process(std::vector<ConversionRequest>& batch);

  // The stored explanation of a conversion. program may be "" when only one program holds the
  // event id (409 when several do). Thread-safe.
  ConversionReply explain(std::string_view event_id, std::string_view program) const;

 private:
  struct Batch;
  ConversionReply handle(Batch& batch, ConversionRequest& req);
  ConversionReply handle_checked(Batch& batch, ConversionRequest& req);
  void attribute(Batch& batch,
                 const links::ProgramView& program,
                 const ConversionRequest& req,
                 std::uint64_t at,
                 boost::json::object& doc);
  ConversionReply refund(Batch& batch,
                         const ConversionRequest& req,
                         std::uint64_t at,
                         boost::json::object& doc);
  ConversionReply store_doc(Batch& batch, const ConversionRequest& req, boost::json::object& doc);

  store::Store& store_;
  const links::Catalog& catalog_;
  ConversionOptions options_;
};

}  // namespace earnd::attribution
