#include "earnd/config/config.h"

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "earnd/common/error.h"

namespace earnd::config {
namespace {

// Reads one table's keys into fields, and rejects keys the table does not define.
class TableReader {
 public:
  TableReader(const toml::table& root, std::string name) : name_(std::move(name)) {
    if (const toml::node* n = root.get(name_)) {
      table_ = n->as_table();
      if (table_ == nullptr) {
        throw ConfigError("config: [" + name_ + "] must be a table");
      }
    }
  }

  ~TableReader() noexcept(false) {
    if (table_ == nullptr || std::uncaught_exceptions() > 0) {
      return;
    }
    for (const auto& [key, value] : *table_) {
      if (known_.count(std::string(key.str())) == 0) {
        throw ConfigError("config: unknown key " + name_ + "." + std::string(key.str()));
      }
    }
  }

  template <typename T>
  void read(const char* key, T& field) {
    known_.insert(key);
    const toml::node* n = table_ ? table_->get(key) : nullptr;
    if (n == nullptr) {
      return;
    }
    if constexpr (std::is_same_v<T, std::string>) {
      auto v = n->value_exact<std::string>();
      require(v.has_value(), key, "a string");
      field = *v;
    } else if constexpr (std::is_same_v<T, bool>) {
      auto v = n->value_exact<bool>();
      require(v.has_value(), key, "true or false");
      field = *v;
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      read_list(n, key, field);
    } else {
      auto v = n->value_exact<std::int64_t>();
      require(v.has_value() && *v >= 0 && *v <= std::numeric_limits<T>::max(), key,
              "a non-negative integer in range");
      field = static_cast<T>(*v);
    }
  }

 private:
  void require(bool ok, const char* key, const char* what) const {
    if (!ok) {
      throw ConfigError("config: " + name_ + "." + key + " must be " + what);
    }
  }

  void read_list(const toml::node* n, const char* key, std::vector<std::string>& field) {
    const toml::array* a = n->as_array();
    require(a != nullptr, key, "an array of strings");
    field.clear();
    for (const auto& item : *a) {
      auto v = item.value<std::string>();
      require(v.has_value(), key, "an array of strings");
      field.push_back(*v);
    }
  }

  std::string name_;
  const toml::table* table_ = nullptr;
  std::set<std::string> known_;
};

Durability parse_durability(const std::string& s) {
  if (s == "group") {
    return Durability::kGroup;
  }
  if (s == "async") {
    return Durability::kAsync;
  }
  throw ConfigError("config: storage.durability must be \"group\" or \"async\", not \"" + s + "\"");
}

void read_tables(const toml::table& root, Config& c) {
  for (const auto& [key, value] : root) {
    static const std::set<std::string> kTables = {"server",   "redirect", "storage", "clicks",
                                                  "webhooks", "web",      "log",     "cluster"};
    if (kTables.count(std::string(key.str())) == 0) {
      throw ConfigError("config: unknown table [" + std::string(key.str()) + "]");
    }
  }
  {
    TableReader t(root, "server");
    auto& s = c.server;
    t.read("public_listen", s.public_listen);
    t.read("admin_listen", s.admin_listen);
    t.read("public_base_url", s.public_base_url);
    t.read("io_threads", s.io_threads);
    t.read("max_header_bytes", s.max_header_bytes);
    t.read("max_body_bytes", s.max_body_bytes);
    t.read("read_timeout_ms", s.read_timeout_ms);
    t.read("idle_timeout_ms", s.idle_timeout_ms);
    t.read("write_timeout_ms", s.write_timeout_ms);
    t.read("max_connections", s.max_connections);
    t.read("conversion_rate_per_client", s.conversion_rate_per_client);
    t.read("conversion_rate_per_program", s.conversion_rate_per_program);
    t.read("conversion_burst_s", s.conversion_burst_s);
    t.read("shutdown_grace_ms", s.shutdown_grace_ms);
    t.read("trusted_proxies", s.trusted_proxies);
    t.read("admin_key", s.admin_key);
  }
  {
    TableReader t(root, "redirect");
    t.read("unknown_code_fallback", c.redirect.unknown_code_fallback);
    t.read("cookie_secure", c.redirect.cookie_secure);
  }
  {
    TableReader t(root, "storage");
    std::string durability = "group";
    t.read("data_dir", c.storage.data_dir);
    t.read("durability", durability);
    t.read("async_flush_interval_ms", c.storage.async_flush_interval_ms);
    t.read("max_batch", c.storage.max_batch);
    t.read("queue_capacity", c.storage.queue_capacity);
    t.read("block_cache_mb", c.storage.block_cache_mb);
    t.read("min_free_mb", c.storage.min_free_mb);
    c.storage.durability = parse_durability(durability);
  }
  {
    TableReader t(root, "clicks");
    t.read("visitor_secret", c.clicks.visitor_secret);
    t.read("shard_count", c.clicks.shard_count);
    t.read("dedupe_capacity", c.clicks.dedupe_capacity);
    t.read("velocity_limit", c.clicks.velocity_limit);
    t.read("velocity_window_s", c.clicks.velocity_window_s);
  }
  {
    TableReader t(root, "webhooks");
    auto& w = c.webhooks;
    t.read("allow_private", w.allow_private);
    t.read("first_retry_ms", w.first_retry_ms);
    t.read("max_retry_ms", w.max_retry_ms);
    t.read("give_up_after_h", w.give_up_after_h);
    t.read("timeout_ms", w.timeout_ms);
    t.read("max_in_flight", w.max_in_flight);
  }
  {
    TableReader t(root, "web");
    auto& w = c.web;
    t.read("portal_link_ttl_s", w.portal_link_ttl_s);
    t.read("portal_session_ttl_s", w.portal_session_ttl_s);
    t.read("admin_session_ttl_s", w.admin_session_ttl_s);
    t.read("cookie_secure", w.cookie_secure);
    t.read("default_per_page", w.default_per_page);
    t.read("max_per_page", w.max_per_page);
  }
  {
    TableReader t(root, "cluster");
    auto& k = c.cluster;
    t.read("urls", k.urls);
    t.read("role", k.role);
    t.read("replicas", k.replicas);
    t.read("stream_max_age_days", k.stream_max_age_days);
    t.read("stream_max_bytes", k.stream_max_bytes);
    t.read("join_timeout_ms", k.join_timeout_ms);
    t.read("forward_batch", k.forward_batch);
    t.read("ack_wait_ms", k.ack_wait_ms);
    t.read("lease_ttl_s", k.lease_ttl_s);
    t.read("drain_timeout_ms", k.drain_timeout_ms);
    t.read("click_wait_ms", k.click_wait_ms);
    t.read("consumer_pending_mb", k.consumer_pending_mb);
    t.read("spool_keep_s", k.spool_keep_s);
    t.read("duplicate_window_s", k.duplicate_window_s);
  }
  {
    TableReader t(root, "log");
    t.read("level", c.log.level);
    t.read("warn_interval_ms", c.log.warn_interval_ms);
  }
}

}  // namespace

Config load_text(std::string_view toml_text) {
  Config c;
  try {
    toml::table root = toml::parse(toml_text);
    read_tables(root, c);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << "config: " << e.description() << " at line " << e.source().begin.line;
    throw ConfigError(msg.str());
  }
  return c;
}

Config load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw ConfigError("config: cannot read " + path);
  }
  std::stringstream text;
  text << in.rdbuf();
  return load_text(text.str());
}

void apply_environment(Config& c) {
  auto env = [](const char* name, std::string& field) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') {
      field = v;
    }
  };
  env("EARND_ADMIN_KEY", c.server.admin_key);
  env("EARND_VISITOR_SECRET", c.clicks.visitor_secret);
  env("EARND_PUBLIC_LISTEN", c.server.public_listen);
  env("EARND_ADMIN_LISTEN", c.server.admin_listen);
  env("EARND_DATA_DIR", c.storage.data_dir);
  std::string allow_private;
  env("EARND_WEBHOOKS_ALLOW_PRIVATE", allow_private);
  if (!allow_private.empty()) {
    c.webhooks.allow_private = allow_private == "1" || allow_private == "true";
  }
  std::string durability;
  env("EARND_DURABILITY", durability);
  if (!durability.empty()) {
    c.storage.durability = parse_durability(durability);
  }
}

std::pair<std::string, std::uint16_t> split_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    throw ConfigError("config: listen address \"" + text + "\" must be HOST:PORT");
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string digits = text.substr(colon + 1);
  char* end = nullptr;
  long port = std::strtol(digits.c_str(), &end, 10);
  bool all_digits = digits.find_first_not_of("0123456789") == std::string::npos;
  if (!all_digits || *end != '\0' || port < 0 || port > 65535) {
    throw ConfigError("config: bad port in \"" + text + "\"");
  }
  return {host, static_cast<std::uint16_t>(port)};
}

void validate(const Config& c) {
  auto check = [](bool ok, const std::string& what) {
    if (!ok) {
      throw ConfigError("config: " + what);
    }
  };
  (void)split_host_port(c.server.public_listen);
  (void)split_host_port(c.server.admin_listen);
  check(c.server.io_threads >= 1 && c.server.io_threads <= 256, "server.io_threads must be 1..256");
  // Beast refuses (by throwing) a field longer than 64 KiB; staying below keeps every field,
  // trailers included, inside what it parses.
  check(c.server.max_header_bytes >= 512 && c.server.max_header_bytes <= 61'440,
        "server.max_header_bytes must be 512..61440");
  check(c.server.max_body_bytes >= 1024, "server.max_body_bytes must be at least 1024");
  check(c.server.max_connections >= 1, "server.max_connections must be at least 1");
  check(c.server.conversion_burst_s >= 1, "server.conversion_burst_s must be at least 1");
  check(c.storage.max_batch >= 1, "storage.max_batch must be at least 1");
  check(c.storage.queue_capacity >= 16, "storage.queue_capacity must be at least 16");
  check(c.clicks.shard_count >= 1 && c.clicks.shard_count <= 256,
        "clicks.shard_count must be 1..256");
  check(c.clicks.velocity_window_s >= 1, "clicks.velocity_window_s must be at least 1");
  check(c.webhooks.give_up_after_h >= 24, "webhooks.give_up_after_h must be at least 24");
  check(c.webhooks.first_retry_ms >= 1 && c.webhooks.max_retry_ms >= c.webhooks.first_retry_ms,
        "webhooks.first_retry_ms must be at least 1 and at most max_retry_ms");
  check(c.webhooks.max_in_flight >= 1, "webhooks.max_in_flight must be at least 1");
  check(c.web.portal_link_ttl_s >= 60, "web.portal_link_ttl_s must be at least 60");
  check(c.web.portal_session_ttl_s >= 60 && c.web.admin_session_ttl_s >= 60,
        "web.portal_session_ttl_s and web.admin_session_ttl_s must be at least 60");
  check(c.web.default_per_page >= 1 && c.web.default_per_page <= c.web.max_per_page,
        "web.default_per_page must be 1..web.max_per_page");
  check(c.cluster.role == "edge" || c.cluster.role == "worker" || c.cluster.role == "both",
        "cluster.role must be \"edge\", \"worker\" or \"both\"");
  check(c.cluster.replicas >= 1 && c.cluster.replicas <= 5, "cluster.replicas must be 1..5");
  check(c.cluster.forward_batch >= 1, "cluster.forward_batch must be at least 1");
  check(c.cluster.ack_wait_ms >= 100, "cluster.ack_wait_ms must be at least 100");
  check(c.cluster.lease_ttl_s >= 2, "cluster.lease_ttl_s must be at least 2");
  check(c.cluster.join_timeout_ms >= 1000, "cluster.join_timeout_ms must be at least 1000");
  check(c.cluster.consumer_pending_mb >= 1, "cluster.consumer_pending_mb must be at least 1");
  check(c.cluster.duplicate_window_s >= 1 && c.cluster.duplicate_window_s <= 86'400,
        "cluster.duplicate_window_s must be 1..86400");
  check(c.cluster.spool_keep_s <= 86'400, "cluster.spool_keep_s must be at most 86400");
  check(!c.server.admin_key.empty(),
        "an admin key is required: set EARND_ADMIN_KEY or server.admin_key");
  check(c.server.admin_key.size() >= 16, "the admin key must be at least 16 characters");
}

}  // namespace earnd::config
