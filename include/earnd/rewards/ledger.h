#pragma once

// The rewards ledger: append-only entries per referrer, each traceable to its conversion, click
// and rule, in the store's docs family. Reward entries go pending -> approved (when the
// program's hold ends) -> paid; a refund appends a negative reversal entry for its share.
// Balances are never stored: they are summed from the entries every time they are read.
// Payouts gather approved amounts per referrer.
//
// Writers run on the conversion thread only (it serializes every ledger change); readers may
// run anywhere and see whole batches.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

namespace earnd::links {
struct ProgramView;
class Catalog;
}  // namespace earnd::links

namespace earnd::store {
class Store;
}

namespace earnd::rewards {

// The changes of one ledger transaction, applied by the caller as one storage write.
class DocTxn {
 public:
  virtual std::optional<std::string> get(const std::string& key) = 0;
  virtual void put(std::string key, std::string value) = 0;
  virtual void del(std::string key) = 0;
  // Adds to the report counter `index` of (program, referrer) in the bucket of at_ms.
  virtual void add_stat(std::string_view program,
                        std::string_view referrer,
                        std::uint64_t at_ms,
                        int index,
                        std::int64_t amount) = 0;
  // The sum of counter `index` added so far in this transaction under prefix (see
  // store::stats_prefix) for buckets from <= b < to: what the store does not hold yet.
  virtual std::int64_t pending_stat(std::string_view prefix,
                                    std::uint32_t from_bucket,
                                    std::uint32_t to_bucket,
                                    int index) const = 0;
  // A webhook event to stage with this transaction.
  virtual void emit(std::string program, std::string type, boost::json::object data) = 0;

 protected:
  ~DocTxn() = default;
};

// Sums of a referrer's entries. balance_minor = pending_minor + approved_minor: what the program
// owes and has not paid; it goes negative when a refund follows a payout.
struct Balance {
  std::int64_t pending_minor = 0;
  std::int64_t approved_minor = 0;
  std::int64_t paid_minor = 0;
  std::int64_t reversed_minor = 0;  // total of reversal entries (negative or zero)
  std::int64_t balance_minor = 0;
};

// Sums entries (as stored JSON objects) from scratch.
Balance summarize(const std::vector<boost::json::object>& entries);

class Ledger {
 public:
  // The store and catalog must outlive the ledger.
  Ledger(const store::Store& store, const links::Catalog& catalog);

  // Rewards for an attributed conversion that is not a self-referral: computes them with the
  // program's current rules and appends the entries. Returns the entries created (for the
  // conversion's answer). conversion is the stored conversion document; it gets
  // "reward_entries" listing the entry ids.
  boost::json::array reward(DocTxn& txn,
                            const links::ProgramView& program,
                            boost::json::object& conversion,
                            std::uint64_t at_ms);

  // A refund of refund_minor on sale: appends reversal entries for that share of each of the
  // sale's referrer rewards (half to even, with no drift across several partial refunds).
  boost::json::array reverse(DocTxn& txn,
                             boost::json::object& sale,
                             std::int64_t refund_minor,
                             std::string_view refund_event_id,
                             std::uint64_t at_ms);

  // Approves every pending entry whose hold ended at or before now. Returns how many.
  std::size_t approve_due(DocTxn& txn, std::uint64_t now_ms);

  // GET /v1/referrers/{id}/ledger: {"referrer_id", "currency", "balance_minor", ..., "entries"}.
  std::optional<boost::json::object> view(std::string_view referrer_id) const;

  // POST /v1/payouts: one payout per referrer of the program whose payable amount is at least
  // the program's minimum (and above zero). Idempotent: entries already in a payout are not
  // gathered again. Returns the program's open (unpaid) payouts.
  boost::json::object create_payouts(DocTxn& txn, std::string_view program, std::uint64_t now_ms);

  // GET /v1/payouts/due?program=ID: what create_payouts would gather for the program right
  // now, without writing anything. {"program", "currency", "minimum_minor", "due": [...],
  // "total_minor"}; one row per referrer with a payable or pending amount (other referrers are
  // left out): {"referrer_id", "external_id"?, "name"?, "code"?, "approved_minor" (payable, not
  // yet in a payout), "pending_minor", "balance_minor" (as the ledger view shows it), "eligible"}.
  // eligible rows are exactly those create_payouts would pay, with the same amounts, and
  // total_minor is their sum. nullopt when there is no such program. Reads every entry of every
  // referrer of the program; safe on any thread, but a conversion committed meanwhile may make
  // a later create_payouts differ.
  std::optional<boost::json::object> due_payouts(std::string_view program) const;

  // POST /v1/payouts/{id}/paid. nullopt when there is no such payout.
  std::optional<boost::json::object> mark_paid(DocTxn& txn,
                                               std::string_view payout_id,
                                               std::uint64_t now_ms);

  // GET /v1/payouts/{id}.csv and GET /v1/payouts?program=&status=.
  std::optional<std::string> payout_csv(std::string_view payout_id) const;
  boost::json::object list_payouts(std::string_view program, std::string_view status) const;

 private:
  std::vector<boost::json::object> entries_of(std::string_view referrer_id) const;

  const store::Store& store_;
  const links::Catalog& catalog_;
};

}  // namespace earnd::rewards
