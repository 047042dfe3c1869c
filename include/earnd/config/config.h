#pragma once

// earnd's configuration: one TOML file (config/default.toml documents every key), EARND_*
// environment overrides for secrets and ports, then command-line flags. Loaded once at startup;
// read-only afterwards, so any thread may read it without synchronization.

#include <cstdint>
#include <string>
#include <vector>

namespace earnd::config {

enum class Durability { kGroup, kAsync };

struct ServerConfig {
  std::string public_listen = "0.0.0.0:8080";
  std::string admin_listen = "127.0.0.1:8081";
  std::string public_base_url;  // empty: derived from public_listen
  int io_threads = 2;
  std::uint32_t max_header_bytes = 8 * 1024;
  std::uint32_t max_body_bytes = 64 * 1024;
  std::uint32_t read_timeout_ms = 10'000;
  std::uint32_t idle_timeout_ms = 60'000;
  std::uint32_t write_timeout_ms = 10'000;
  std::uint32_t max_connections = 10'000;
  // Conversions (POST /v1/conversions, GET /postback) per second, on average, per client address
  // and per program; a client or program may send conversion_burst_s seconds' worth at once.
  // 0 turns that limit off.
  std::uint32_t conversion_rate_per_client = 1'000;
  std::uint32_t conversion_rate_per_program = 5'000;
  std::uint32_t conversion_burst_s = 10;
  std::uint32_t shutdown_grace_ms = 5'000;
  std::vector<std::string> trusted_proxies;  // addresses or CIDR blocks
  std::string admin_key;
};

struct RedirectConfig {
  std::string unknown_code_fallback;  // empty: answer 404
  bool cookie_secure = false;
};

struct StorageConfig {
  std::string data_dir = "./data";
  Durability durability = Durability::kGroup;
  std::uint32_t async_flush_interval_ms = 10;
  std::uint32_t max_batch = 4096;
  std::uint32_t queue_capacity = 65'536;
  std::uint32_t block_cache_mb = 64;
  std::uint32_t min_free_mb = 64;  // free-space reserve below which writes are refused; 0: off
};

struct ClicksConfig {
  std::string visitor_secret;  // empty: generated at first start and kept in the data dir
  std::uint32_t shard_count = 64;
  std::uint32_t dedupe_capacity = 1'000'000;
  std::uint32_t velocity_limit = 0;  // 0 turns the velocity rule off
  std::uint32_t velocity_window_s = 60;
};

struct WebhooksConfig {
  bool allow_private = false;  // also EARND_WEBHOOKS_ALLOW_PRIVATE=1
  std::uint32_t first_retry_ms = 1'000;
  std::uint32_t max_retry_ms = 3'600'000;
  std::uint32_t give_up_after_h = 26;
  std::uint32_t timeout_ms = 10'000;
  std::uint32_t max_in_flight = 16;
};

// The admin dashboard and the referrer portal (web pages, sign-in, list endpoints).
struct WebConfig {
  std::uint32_t portal_link_ttl_s = 900;        // lifetime of a one-time portal sign-in link
  std::uint32_t portal_session_ttl_s = 28'800;  // lifetime of a referrer's portal session
  std::uint32_t admin_session_ttl_s = 28'800;   // lifetime of a staff session on /admin/
  bool cookie_secure = false;                   // add Secure to the session cookies
  std::uint32_t default_per_page = 50;          // list endpoints: page size when not given
  std::uint32_t max_per_page = 500;             // list endpoints: largest page size accepted
};

struct LogConfig {
  std::string level = "info";
  std::uint32_t warn_interval_ms = 10'000;
};

// Scale-out mode (docs/scale-out.md). The --cluster and --role flags override urls and role.
struct ClusterConfig {
  std::string urls;            // nats://host:port,...; empty: single-node mode
  std::string role = "both";   // edge, worker or both
  std::uint32_t replicas = 3;  // of the click stream and the buckets, when earnd creates them
  // The click stream keeps clicks this long (0: until max bytes), so a worker can rebuild from
  // it what is younger; the longest attribution window plus a margin.
  std::uint32_t stream_max_age_days = 35;
  std::uint64_t stream_max_bytes = 0;       // 0: no byte limit (JetStream's account limit)
  std::uint32_t join_timeout_ms = 30'000;   // a node's first start: agreeing on the secret
  std::uint32_t forward_batch = 2048;       // clicks per publish round
  std::uint32_t ack_wait_ms = 2000;         // per publish round; unacknowledged clicks are resent
  std::uint32_t lease_ttl_s = 10;           // a dead worker's shards move after this
  std::uint32_t drain_timeout_ms = 10'000;  // on stop: spool, index and shard handover
  std::uint32_t click_wait_ms = 2000;  // a conversion waits this long for a recent unknown click
  std::uint32_t consumer_pending_mb = 256;  // the click consumer's buffer before it drops
  // Acknowledged clicks stay in an edge's spool this long, to be sent again if every NATS server
  // died before writing them out (nats-server 2.9 acknowledges before it writes).
  std::uint32_t spool_keep_s = 180;
  std::uint32_t duplicate_window_s = 120;  // the click stream's Nats-Msg-Id window, at creation
};

struct Config {
  ServerConfig server;
  RedirectConfig redirect;
  StorageConfig storage;
  ClicksConfig clicks;
  WebhooksConfig webhooks;
  WebConfig web;
  LogConfig log;
  ClusterConfig cluster;
};

// Reads a TOML file over the defaults; unknown keys are an error so a typo is never silently
// ignored. Throws ConfigError naming the key or the parse position.
Config load_file(const std::string& path);

// Parses TOML text over the defaults (used by load_file and tests). Throws ConfigError.
Config load_text(std::string_view toml_text);

// Applies EARND_ADMIN_KEY, EARND_VISITOR_SECRET, EARND_PUBLIC_LISTEN, EARND_ADMIN_LISTEN,
// EARND_DATA_DIR, EARND_DURABILITY and EARND_WEBHOOKS_ALLOW_PRIVATE when set. Throws ConfigError on
// a bad value.
void apply_environment(Config& c);

// Checks ranges and combinations. Throws ConfigError.
void validate(const Config& c);

// Splits "host:port" ("[::1]:80" for IPv6). Throws ConfigError.
std::pair<std::string, std::uint16_t> split_host_port(const std::string& text);

}  // namespace earnd::config
