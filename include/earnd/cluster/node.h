#pragma once

// Scale-out mode on NATS JetStream (docs/scale-out.md). Only built into the process when
// `--cluster URLS` or config [cluster] urls is set; single-node mode never touches this module.
//
// One Node per process. It owns one NATS connection and four threads:
//  - forwarder: reads the local spool (clicks the edge stored, in the docs family under "sp/")
//    in order, publishes them to the replicated stream EARND_CLICKS with the click id as
//    Nats-Msg-Id and the shard in the subject, and deletes what the stream acknowledged, moving
//    the durable forward cursor in the same write. A NATS outage only grows the spool.
//  - indexer: an ordered consumer on the stream from the last applied sequence + 1 that writes
//    every click it has not seen into the local click index (clicks, visitor, counters) with the
//    applied sequence in the same write; it is recreated from that sequence after any error.
//  - leases: heartbeats this worker in the EARND_LEASES bucket and holds the shards whose
//    rendezvous owner it is, by create-if-absent and compare-and-set renewal; the set of held
//    shards is kept in the local store so that `earnctl export clicks --data-dir` lists only them.
//  - meta: an ordered consumer on the EARND_META bucket that applies programs, referrers and
//    links written on any node to the local catalog (and its lock-free snapshot); local changes
//    are queued and put into the bucket by the same thread.
// Conversions: await_click() is the read barrier for a click made on another edge, claim() the
// cluster-wide create-if-absent of a conversion outcome in the EARND_OUTCOMES bucket.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "earnd/common/click_id.h"
#include "earnd/ingest/sink.h"

namespace earnd::store {
class Store;
}

namespace earnd::links {
class Catalog;
}

namespace earnd::metrics {
class Metrics;
}

namespace earnd::cluster {

enum class Role { kEdge, kWorker, kBoth };

struct ClusterOptions {
  std::vector<std::string> urls;  // nats://host:port, all of the cluster's servers
  Role role = Role::kBoth;
  std::string node_id;  // empty: made at the first start and kept in the store
  std::uint32_t shard_count = 64;
  std::uint32_t replicas = 3;
  std::uint32_t duplicate_window_s = 120;  // the click stream's Nats-Msg-Id dedupe window
  std::uint32_t forward_batch = 2048;      // clicks per publish round
  std::uint32_t publish_max_pending = 4096;
  std::uint32_t ack_wait_ms = 2000;  // per publish round; unacked clicks are resent
  std::uint32_t retry_ms = 250;      // pause after a failed round or API call
  std::uint32_t index_batch = 1000;  // clicks per index write
  std::uint32_t lease_ttl_s = 10;    // the lease bucket's TTL
  std::uint32_t lease_renew_ms = 1000;
  std::uint32_t lease_op_timeout_ms = 500;    // one lease bucket call
  std::uint32_t click_wait_ms = 2000;         // conversion read barrier for a recent unknown click
  std::uint32_t click_wait_age_ms = 900'000;  // only clicks younger than this are waited for
  std::uint32_t drain_timeout_ms = 10'000;    // on stop: spool, index and shard handover
  std::uint32_t heartbeat_ms = 1000;          // ordered consumers' idle heartbeat
  std::uint64_t stream_max_age_s = 0;         // click stream retention; 0: unlimited
  std::uint64_t stream_max_bytes = 0;         // 0: unlimited
  std::uint64_t consumer_pending_bytes = 256ull << 20;  // click consumer buffer
  std::uint32_t spool_keep_s = 180;  // acknowledged clicks stay in the spool this long
};

// Parses "edge", "worker" or "both"; nullopt otherwise.
std::optional<Role> parse_role(std::string_view text) noexcept;

// Splits a comma-separated URL list.
std::vector<std::string> split_urls(std::string_view text);

// Counts for `earnctl cluster status` and /metrics.
struct Status {
  std::string node_id;
  bool connected = false;
  std::string connected_url;            // the NATS server this node's connection is on
  bool ready = false;                   // streams and buckets exist
  std::uint64_t spool_depth = 0;        // clicks stored here and not yet acknowledged by the stream
  std::uint64_t forwarded = 0;          // clicks acknowledged by the stream since start
  std::uint64_t spool_kept = 0;         // acknowledged clicks still kept (cluster.spool_keep_s)
  std::uint64_t resent_clicks = 0;      // clicks sent again because the stream had lost them
  double forward_lag_s = 0;             // age of the oldest unforwarded click
  std::uint64_t applied_seq = 0;        // last stream sequence applied to the local index
  std::uint64_t stream_last_seq = 0;    // the stream's last sequence (0 when unreachable)
  std::uint64_t indexed = 0;            // clicks added to the local index from the stream
  bool replaying = false;               // a replay asked for is pending or running
  std::uint64_t replayed = 0;           // clicks replays added (the index lacked them)
  std::uint64_t consumer_gaps = 0;      // times the click consumer skipped and was read again
  std::uint64_t consumer_stalls = 0;    // times an idle consumer was replaced (stream had more)
  std::uint64_t meta_pending = 0;       // catalog records written here, not yet in the meta bucket
  std::uint64_t meta_seen_seq = 0;      // the meta bucket's last sequence this node has read
  std::uint64_t meta_last_seq = 0;      // the meta bucket's last sequence (0 when unreachable)
  std::uint64_t index_lag_ms_last = 0;  // click time to index time of the last indexed click
  std::vector<std::uint32_t> held_shards;
  std::vector<std::string> live_workers;
};

// The status as the JSON object GET /v1/cluster/status answers (docs/scale-out.md).
std::string status_json(const Status& st, Role role, std::uint32_t shard_count);

class Node {
 public:
  // The store and metrics must outlive the node. Reads the spool and cursors; throws
  // StartupError when the store cannot be read.
  Node(ClusterOptions options, store::Store& store, metrics::Metrics& metrics);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Connects (lazily: a NATS outage at start does not stop earnd from serving redirects) and
  // starts the threads. Call once, before serving. The catalog must outlive the node.
  void start(links::Catalog& catalog);

  // Stops accepting new work, drains the spool to the stream and the index up to the stream's
  // last sequence (each bounded by drain_timeout_ms), then stops the threads. Leases are not
  // released (they expire after the TTL) unless release_leases. Safe to call twice.
  void stop(bool release_leases = false);

  // The ingest sink of the edge: each batch goes to the spool and the local index in one
  // synced unit, so the 302 waits only for the local disk.
  ingest::ClickSink& sink();

  // Catalog hook: meta records written on this node, to replicate. Thread-safe, non-blocking.
  void on_meta_written(const std::vector<std::pair<std::string, std::string>>& kv);

  // Waits (at most click_wait_ms) until a click made elsewhere is in the local index. True when
  // it is there. Blocks the caller.
  bool await_click(const ClickId& id);

  // Create-if-absent of a conversion outcome. nullopt: the cluster could not be reached (the
  // caller answers 503); an empty string: this call created it; otherwise the body stored by
  // the first writer.
  // The record keeps the answer with this node's id and the request; a record this node wrote
  // in an earlier run counts as created by this call (its local write was lost with that run).
  std::optional<std::string> claim(std::string_view program,
                                   std::string_view event_id,
                                   std::string_view answer,
                                   std::string_view request);

  // The requests of the outcomes this node claimed since since_ms (from the outcome bucket's
  // stream), for the start-up recovery: each is processed again and, when its local write was
  // lost, finished. Waits at most timeout_ms for the cluster; empty (and an error logged) when
  // it cannot be reached.
  std::vector<std::string> own_claims_since(std::uint64_t since_ms,
                                            std::uint32_t timeout_ms = 15'000);

  // One secret for the whole cluster, e.g. the visitor-hash key: every node must hash a
  // visitor alike, or one visitor's clicks on two edges land in two shards and a conversion
  // matched by visitor misses the other's. Create-if-absent of `name` in the secrets bucket
  // with `candidate` (this node's own); the value that is there afterwards (the first node's)
  // is returned. Connects if start() has not; waits at most timeout_ms for the cluster, then
  // nullopt.
  std::optional<std::string> agree_secret(std::string_view name,
                                          const std::string& candidate,
                                          std::uint32_t timeout_ms);

  Status status() const;

  // The shards this worker holds now (index = shard) and the last stream sequence in its index:
  // no NATS call.
  std::vector<bool> held() const;
  std::uint64_t applied_seq() const;

  // Moves the leadership of every stream earnd uses (the click stream and the three key-value
  // buckets) off the NATS server named `server` (its server_name), so that it can be stopped
  // without an election stall: a step-down request for each stream it leads, then a wait (at
  // most timeout_ms) until another server leads it. Returns a JSON object: per stream its
  // leader before and after, and "done" when none is led by `server` any more. nullopt when
  // the cluster cannot be reached.
  std::optional<std::string> step_down(std::string_view server, std::uint32_t timeout_ms = 15'000);

  // Reads the click stream again from from_ms (Unix ms) up to where the index had got, adding
  // every click the local index lacks (earnctl cluster replay --since): repairs an index that
  // lost clicks, e.g. restored from an older copy. Returns at once; status().replaying tells
  // when it is done.
  void replay_since(std::uint64_t from_ms);

  Role role() const;
  std::uint32_t shard_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The shards this data directory's worker held when it last ran in cluster mode (a key of the
// meta family), or nullopt when it never ran in cluster mode.
std::optional<std::vector<bool>> held_shards(const store::Store& store);

}  // namespace earnd::cluster
