#pragma once

// earnd's embedded storage on RocksDB. Column families: "meta" (programs, referrers, links,
// settings as JSON values), "clicks" (by click id, so in time order), "visitor" (visitor hash +
// time + click id, for matching conversions to clicks) and "counters" (per link and day, summed
// by a merge operator). No RocksDB type leaves this module; rocksdb::Status becomes ErrorCode.
// docs/storage.md explains the options chosen for each family.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "earnd/common/click.h"
#include "earnd/common/error.h"

namespace rocksdb {
class FileSystem;
}

namespace earnd::store {

enum class OpenMode {
  kReadWrite,  // the server: one process at a time (RocksDB's LOCK file)
  kReadOnly,   // earnctl on a data dir, also while the server runs: sees what was written by open
};

struct StoreOptions {
  std::string data_dir;
  OpenMode mode = OpenMode::kReadWrite;
  std::uint32_t block_cache_mb = 64;
  // WAL files kept for reuse (RocksDB recycle_log_file_num); 0 turns reuse off.
  std::size_t recycle_wal_files = 4;
  // Writes are refused with Errc::kNoSpace, without reaching RocksDB, while the data directory's
  // file system has fewer free bytes than this (checked on each write call); 0 turns the check
  // off. RocksDB itself must never meet a full disk: Debian's build aborts on some of its
  // write-error paths, and flushes and compactions need room.
  std::uint64_t min_free_bytes = 0;
  // RocksDB's pipelined write: while one writer's batch goes into the memtables, the next
  // writer's batch is already written to the WAL and synced. Pays only with several threads
  // writing synced batches at once (the pipeline's commit threads in group durability).
  bool pipelined_write = false;
  // Bulk import only (earnctl import): the click families use unsorted vector memtables, sorted
  // once when flushed, instead of skip lists that pay a sorted insert per entry. Reads of those
  // families from the memtable then sort a copy, so a server never opens a store this way.
  bool bulk_memtables = false;
  // Fault-injection tests only: the file system RocksDB goes through (one that can drop unsynced
  // bytes, as a power cut does). Null: the operating system's. Must outlive the store.
  std::shared_ptr<rocksdb::FileSystem> file_system = nullptr;
};

// Click counters are kept per link and per 15-minute bucket (minutes since the epoch / 15), fine
// enough for any time zone's day and hour boundaries.
inline constexpr std::uint64_t kBucketMs = 15 * 60'000;

inline std::uint32_t bucket_of(std::uint64_t ts_ms) noexcept {
  return static_cast<std::uint32_t>(ts_ms / kBucketMs);
}

// One entry of the visitor index: a click of a visitor, with what matching needs.
struct VisitorClick {
  std::uint64_t ts_ms = 0;
  ClickId id;          // meaningful only when has_id
  bool has_id = true;  // false for index entries without the id: Store::clicks_at finds it
  ClickReason reason = ClickReason::kHuman;
  std::string_view program;      // valid during the callback only
  std::string_view referrer_id;  // valid during the callback only
  std::string_view code;         // valid during the callback only
};

// Counts for one link over a time range.
struct LinkDayCounts {
  std::uint64_t clicks = 0;
  std::uint64_t unique_clicks = 0;
  std::uint64_t bot_clicks = 0;
};

// A set of click writes applied atomically. Not thread-safe; reuse it with clear() to keep its
// buffer. Allocates as it grows.
class ClickBatch {
 public:
  ~ClickBatch();
  ClickBatch(ClickBatch&&) noexcept;
  ClickBatch& operator=(ClickBatch&&) noexcept;

  void add(const ClickRecord& c);
  void clear();

  std::size_t count() const noexcept { return count_; }

  // Bytes of the batch as handed to RocksDB; the counters of its clicks are summed per link and
  // day and added only by Store::write_clicks, so this is complete after that call.
  std::size_t data_bytes() const noexcept;

 private:
  friend class Store;
  ClickBatch();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::size_t count_ = 0;
};

class Store {
 public:
  // Opens or creates the store. Throws StartupError with RocksDB's message on failure (a second
  // server on the same directory fails here with "lock").
  static std::unique_ptr<Store> open(const StoreOptions& options);

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Meta family. Writes are synced. Thread-safe.
  [[nodiscard]] ErrorCode put_meta(std::string_view key, std::string_view value);
  [[nodiscard]] ErrorCode put_meta_many(const std::vector<std::pair<std::string, std::string>>& kv);
  [[nodiscard]] Result<std::optional<std::string>> get_meta(std::string_view key) const;
  // Calls fn for each key starting with prefix, in key order, until fn returns false.
  void scan_meta(std::string_view prefix,
                 const std::function<bool(std::string_view, std::string_view)>& fn) const;

  // An empty batch bound to this store's families. The store must outlive it.
  ClickBatch make_click_batch() const;

  // Applies a click batch with the WAL; with sync, returns after the WAL reached the disk.
  // Thread-safe; the ingest writer is its only caller on the hot path.
  [[nodiscard]] ErrorCode write_clicks(ClickBatch& batch, bool sync);
  // Syncs the WAL (async durability calls this once per flush interval).
  [[nodiscard]] ErrorCode sync_wal();

  // Clicks with from_ms <= ts_ms < to_ms, oldest first, until fn returns false. Corrupt records
  // are skipped and counted in the returned value's second member.
  Result<std::uint64_t> scan_clicks(std::uint64_t from_ms,
                                    std::uint64_t to_ms,
                                    const std::function<bool(const ClickRecord&)>& fn) const;
  [[nodiscard]] Result<std::optional<ClickRecord>> get_click(const ClickId& id) const;

  // Per-link daily counts (day = days since 1970-01-01 UTC).
  Result<LinkDayCounts> link_day_counts(std::string_view code, std::uint32_t day) const;

  // Calls fn(bucket, counts) for each 15-minute bucket of the link with from <= bucket < to
  // that has clicks, in order.
  [[nodiscard]] ErrorCode scan_link_buckets(
      std::string_view code,
      std::uint32_t from_bucket,
      std::uint32_t to_bucket,
      const std::function<void(std::uint32_t, const LinkDayCounts&)>& fn) const;

  // The clicks of a visitor with from_ms <= ts_ms <= to_ms (both inclusive), oldest first,
  // until fn returns false. Reads only the visitor index, whose entries since format 3 do not
  // hold the click id (has_id false; several clicks of one millisecond come one after another,
  // in no defined order); entries written before carry it and come in id order within a time.
  [[nodiscard]] ErrorCode scan_visitor(std::uint64_t visitor_hash,
                                       std::uint64_t from_ms,
                                       std::uint64_t to_ms,
                                       const std::function<bool(const VisitorClick&)>& fn) const;
  // The stored clicks of a visitor at exactly ts_ms, in id order, until fn returns false: how
  // an id-less visitor entry is resolved (one seek into the clicks family).
  [[nodiscard]] ErrorCode clicks_at(std::uint64_t visitor_hash,
                                    std::uint64_t ts_ms,
                                    const std::function<bool(const ClickRecord&)>& fn) const;
  // The same for several times (ascending), with one iterator.
  [[nodiscard]] ErrorCode clicks_at(std::uint64_t visitor_hash,
                                    std::span<const std::uint64_t> times,
                                    const std::function<bool(const ClickRecord&)>& fn) const;

  // The "docs" family: conversions, customer bindings and other documents keyed by the
  // caller. write_docs applies puts atomically (synced when sync). Thread-safe.
  [[nodiscard]] Result<std::optional<std::string>> get_doc(std::string_view key) const;
  [[nodiscard]] ErrorCode write_docs(const std::vector<std::pair<std::string, std::string>>& kv,
                                     bool sync);
  // Calls fn for each doc whose key starts with prefix, in key order, until fn returns false.
  void scan_docs(std::string_view prefix,
                 const std::function<bool(std::string_view, std::string_view)>& fn) const;

  // The "stats" family: per-key arrays of u64 counters summed by a merge operator. Keys are
  // the caller's, ending in a 4-byte big-endian 15-minute bucket. A DocBatch carries doc puts
  // and stat additions applied together.
  struct DocBatch {
    std::vector<std::pair<std::string, std::string>> puts;
    std::vector<std::string> deletes;  // applied after the puts
    std::vector<std::pair<std::string, std::vector<std::int64_t>>> stat_adds;
  };

  [[nodiscard]] ErrorCode write(const DocBatch& batch, bool sync);
  // Calls fn(bucket, counters) for keys prefix + bucket with from <= bucket < to, in order.
  [[nodiscard]] ErrorCode scan_stats(
      std::string_view prefix,
      std::uint32_t from_bucket,
      std::uint32_t to_bucket,
      const std::function<void(std::uint32_t, const std::vector<std::int64_t>&)>& fn) const;

  // A named secret kept in the meta family: read, or made (base64 of 32 random bytes) and
  // stored on first use. Throws StartupError when it cannot be stored (startup only).
  std::string load_or_create_secret(std::string_view name);

  // Turns off the WAL for click batches (bulk import: the data is flushed by flush() instead).
  void set_bulk_load(bool on) noexcept;
  [[nodiscard]] ErrorCode flush();

  // A RocksDB property (e.g. "rocksdb.estimate-num-keys") summed over families, for /metrics.
  std::uint64_t int_property(std::string_view name) const;
  // Bytes of SST files of the clicks families, and a full compaction (for bytes-per-click).
  std::uint64_t live_sst_bytes() const;
  // The same per column family, by family name (every family, in the store's order).
  std::vector<std::pair<std::string, std::uint64_t>> family_sst_bytes() const;
  [[nodiscard]] ErrorCode compact_all();
  // Writes a probe key to check that storage accepts writes (/readyz).
  [[nodiscard]] ErrorCode probe_write();

  // True once a write failed with an error RocksDB deems fatal (an I/O error on the write-ahead
  // log, or a full disk met by RocksDB itself despite StoreOptions::min_free_bytes): RocksDB then
  // refuses every write until the store is opened again, so earnd must be restarted. What was
  // written before the error stays readable, and reopening replays it. Logged once, as
  // event=storage_fatal. Thread-safe.
  // LIMIT: earnd does not reopen the store by itself; a service manager's restart does.
  bool needs_restart() const noexcept;

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Day number (days since 1970-01-01 UTC) of a Unix millisecond time.
inline std::uint32_t day_of(std::uint64_t ts_ms) noexcept {
  return static_cast<std::uint32_t>(ts_ms / 86'400'000ULL);
}

}  // namespace earnd::store
