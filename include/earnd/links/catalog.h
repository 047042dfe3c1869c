#pragma once

// Programs, referrers and links: stored in the store's meta family, changed through the admin
// API, and served to the redirect path from an immutable in-memory snapshot. A change builds
// and publishes a new snapshot; readers keep using the one they hold, so they never lock and
// never see a half-written link.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include "earnd/common/error.h"
#include "earnd/links/destination.h"

namespace earnd::store {
class Store;
}

namespace earnd::links {

// What the redirect path needs of a program.
struct ProgramView {
  std::string id;
  std::string currency;
  ParsedDestination destination;
  std::vector<std::string> allowed_hosts;
  bool deep_links = false;
  std::string ref_param = "ref";
  std::string click_param = "earnd_cid";
  std::string fallback_url;
  std::uint64_t cookie_max_age_s = 30ull * 86400;
  std::uint64_t dedupe_ms = 60ull * 60'000;
  std::string model = "last_click";
  std::uint32_t window_days = 30;
  std::uint64_t binding_ms = 365ull * 86'400'000;
  std::uint64_t probabilistic_ms = 0;  // 0: probabilistic matching off
  std::string publishable_key;
  std::string webhook_url;     // "" when the program has none
  std::string webhook_secret;  // whsec_<base64>
  std::uint32_t hold_days = 30;
  std::int64_t payout_minimum_minor = 0;
  std::string rewards_json;  // the program's reward rules, as stored (a JSON array)
};

// A referrer as reports and conversions need it.
struct ReferrerInfo {
  std::string id;
  std::string program;
  std::string external_id;
  std::string name;
  std::vector<std::string> codes;  // its links, in lower-case code order
};

// What the redirect path needs of a link.
struct LinkView {
  std::string code;  // as the admin wrote it; lookups are case-insensitive
  std::string referrer_id;
  bool disabled = false;
  std::optional<ParsedDestination> destination;  // overrides the program's
  std::shared_ptr<const ProgramView> program;

  const ParsedDestination& effective_destination() const {
    return destination ? *destination : program->destination;
  }
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept;
};

struct StringEq {
  using is_transparent = void;

  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};

// An immutable view of every link, keyed by lower-case code.
struct Snapshot {
  boost::unordered_flat_map<std::string, LinkView, StringHash, StringEq> links;
  boost::unordered_flat_map<std::string, std::shared_ptr<const ProgramView>, StringHash, StringEq>
      programs;
  std::uint64_t version = 0;

  // The program with this id, or nullptr.
  const ProgramView* program(std::string_view id) const noexcept;

  // The link for a code in any case, or nullptr. code must be at most 32 characters.
  const LinkView* find(std::string_view code) const noexcept;
};

// One link for Catalog::ensure_links: its code and the external id of the referrer who owns it.
struct LinkSpec {
  std::string code;
  std::string external_id;
};

// What Catalog::ensure_links changed.
struct EnsureLinksResult {
  std::size_t referrers_created = 0;
  std::size_t links_created = 0;
  std::size_t invalid = 0;  // specs skipped: a bad code or an empty or over-long external id
};

// The outcome of an admin call: an HTTP status and a JSON body.
struct AdminReply {
  unsigned status = 200;
  boost::json::value body;
};

// Builds {"error": {"code": code, "message": message}}.
AdminReply error_reply(unsigned status, std::string_view code, std::string_view message);

class Catalog {
 public:
  // Loads every program, referrer and link from the store (startup; throws StartupError on a
  // storage failure). The store must outlive the catalog. public_base_url forms referrer URLs.
  Catalog(store::Store& store, std::string public_base_url);
  ~Catalog();

  // The current snapshot. Thread-safe; costs an atomic shared_ptr load, so hot paths should
  // keep a SnapshotReader instead.
  std::shared_ptr<const Snapshot> snapshot() const;

  std::uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }

  // Admin calls. Each validates its JSON input, writes to the store (synced) and publishes a
  // new snapshot before it returns. Thread-safe: admin writers are serialized by a mutex that
  // the redirect path never takes.
  AdminReply create_program(const boost::json::value& body);
  AdminReply get_program(std::string_view id) const;
  AdminReply patch_program(std::string_view id, const boost::json::value& body);
  AdminReply rotate_keys(std::string_view id);
  AdminReply create_referrer(std::string_view program, const boost::json::value& body);
  AdminReply create_link(const boost::json::value& body);
  AdminReply list_links(std::string_view program, std::string_view referrer_id) const;
  AdminReply patch_link(std::string_view code, const boost::json::value& body);

  // Sets the base of referrer URLs ("http://host:port"); used once the bound port is known.
  void set_public_base_url(std::string url);

  // The base of referrer URLs (and of portal sign-in links). Thread-safe; allocates.
  std::string public_base_url() const;

  // Called after a referrer is enrolled (program, "referrer.enrolled", data), for webhooks. Set
  // before serving; runs on the admin thread with the catalog's mutex held, so it must not
  // call back into the catalog.
  using EventHook =
      std::function<void(const std::string& program, const std::string& type, boost::json::object)>;

  void set_event_hook(EventHook hook) { event_hook_ = std::move(hook); }

  // Scale-out: told of every meta record (program, referrer, link) this catalog wrote, after
  // the write; the cluster module replicates them. Set before serving; runs on the admin thread
  // with the catalog's mutex held, so it must be quick and must not call back into the catalog.
  using MetaHook =
      std::function<void(const std::vector<std::pair<std::string, std::string>>& records)>;

  void set_meta_hook(MetaHook hook) { meta_hook_ = std::move(hook); }

  // Scale-out: applies meta records written on another node. Records equal to the local ones
  // are skipped; when any differ they are stored (synced), the catalog is reloaded and a new
  // snapshot is published. Returns how many differed. Thread-safe; O(catalog) when any differ.
  std::size_t apply_replicated(const std::vector<std::pair<std::string, std::string>>& records);

  // Checks a program's "rewards" array when it is saved (the rewards module's validate_rules);
  // returns a message for the 400 answer, or nullopt. Set before serving.
  using RulesValidator = std::function<std::optional<std::string>(const boost::json::value&)>;

  void set_rules_validator(RulesValidator v) { rules_validator_ = std::move(v); }

  // The program whose secret key (program_key) this is, or nullopt.
  std::optional<std::string> program_for_key(std::string_view key) const;

  // The program whose publishable key this is, or nullopt.
  std::optional<std::string> program_for_publishable_key(std::string_view key) const;

  // A referrer by id, or nullopt. Thread-safe.
  std::optional<ReferrerInfo> referrer(std::string_view id) const;

  // Every referrer of a program (all programs when program is ""), ordered by id. Thread-safe.
  std::vector<ReferrerInfo> referrers_of(std::string_view program) const;

  // Bulk form of create_referrer + create_link for imports: makes sure every code of links
  // exists. A missing code becomes a link of program owned by the referrer with that
  // external_id, which is created (without a link of its own) when the program has none. Codes
  // that exist already, in any program, are left as they are; of repeated codes in links the
  // first wins. Everything new is written in one synced meta batch and published as one
  // snapshot, so 100k links take one write instead of 100k. Errc::kNotFound when the program
  // does not exist; the store's error when the write fails (nothing changed then). Thread-safe;
  // blocks on the write; allocates O(links).
  [[nodiscard]] Result<EnsureLinksResult> ensure_links(std::string_view program,
                                                       std::span<const LinkSpec> links);

  // Referrer id -> external id, for exports. Thread-safe.
  std::optional<std::string> referrer_external_id(std::string_view referrer_id) const;

 private:
  struct State;
  void load();
  void publish();
  [[nodiscard]] ErrorCode write_meta(const std::string& key, const std::string& value);
  [[nodiscard]] ErrorCode write_meta_many(
      const std::vector<std::pair<std::string, std::string>>& records);
  AdminReply add_link(const std::string& program,
                      const std::string& referrer_id,
                      std::string code,
                      const boost::json::value* destination);

  store::Store& store_;
  std::string public_base_url_;
  mutable std::mutex mutex_;  // serializes admin writers; readers use the published snapshot
  std::unique_ptr<State> state_;
  std::shared_ptr<const Snapshot> published_;  // accessed with std::atomic_load/store
  std::atomic<std::uint64_t> version_{0};
  EventHook event_hook_;
  MetaHook meta_hook_;
  RulesValidator rules_validator_;
};

// A per-thread handle on the catalog's snapshot: one acquire load per request while nothing
// changed, and a refresh after a change. Not thread-safe: one per I/O thread.
class SnapshotReader {
 public:
  explicit SnapshotReader(const Catalog& catalog) : catalog_(catalog) {}

  const Snapshot& get() {
    if (catalog_.version() != version_ || !snapshot_) {
      snapshot_ = catalog_.snapshot();
      version_ = snapshot_->version;
    }
    return *snapshot_;
  }

 private:
  const Catalog& catalog_;
  std::uint64_t version_ = 0;
  std::shared_ptr<const Snapshot> snapshot_;
};

// True for a valid link code: [A-Za-z0-9_-]{3,32}.
bool is_valid_code(std::string_view code) noexcept;

// True for a valid program id: [a-z0-9-]{1,40}.
bool is_valid_program_id(std::string_view id) noexcept;

// Internal referrer id -> external_id, read from the store's referrer records (for the batch
// attribution's output, which names referrers by external id). Reads the whole family prefix.
std::map<std::string, std::string, std::less<>> external_ids(const store::Store& store);

}  // namespace earnd::links
