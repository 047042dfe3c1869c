#include "earnd/config/config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>

#include <gtest/gtest.h>

#include "earnd/common/error.h"

namespace earnd::config {
namespace {

const std::string kDefaultToml = std::string(EARND_SOURCE_DIR) + "/config/default.toml";

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs load_text and returns the ConfigError message, or "" if nothing was thrown.
std::string load_error(std::string_view toml) {
  try {
    (void)load_text(toml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

void expect_same_server(const ServerConfig& a, const ServerConfig& b) {
  EXPECT_EQ(a.public_listen, b.public_listen);
  EXPECT_EQ(a.admin_listen, b.admin_listen);
  EXPECT_EQ(a.public_base_url, b.public_base_url);
  EXPECT_EQ(a.io_threads, b.io_threads);
  EXPECT_EQ(a.max_header_bytes, b.max_header_bytes);
  EXPECT_EQ(a.max_body_bytes, b.max_body_bytes);
  EXPECT_EQ(a.read_timeout_ms, b.read_timeout_ms);
  EXPECT_EQ(a.idle_timeout_ms, b.idle_timeout_ms);
  EXPECT_EQ(a.write_timeout_ms, b.write_timeout_ms);
  EXPECT_EQ(a.max_connections, b.max_connections);
  EXPECT_EQ(a.conversion_rate_per_client, b.conversion_rate_per_client);
  EXPECT_EQ(a.conversion_rate_per_program, b.conversion_rate_per_program);
  EXPECT_EQ(a.conversion_burst_s, b.conversion_burst_s);
  EXPECT_EQ(a.shutdown_grace_ms, b.shutdown_grace_ms);
  EXPECT_EQ(a.trusted_proxies, b.trusted_proxies);
  EXPECT_EQ(a.admin_key, b.admin_key);
}

void expect_same_rest(const Config& a, const Config& b) {
  EXPECT_EQ(a.redirect.unknown_code_fallback, b.redirect.unknown_code_fallback);
  EXPECT_EQ(a.redirect.cookie_secure, b.redirect.cookie_secure);
  EXPECT_EQ(a.storage.data_dir, b.storage.data_dir);
  EXPECT_EQ(a.storage.durability, b.storage.durability);
  EXPECT_EQ(a.storage.async_flush_interval_ms, b.storage.async_flush_interval_ms);
  EXPECT_EQ(a.storage.max_batch, b.storage.max_batch);
  EXPECT_EQ(a.storage.queue_capacity, b.storage.queue_capacity);
  EXPECT_EQ(a.storage.block_cache_mb, b.storage.block_cache_mb);
  EXPECT_EQ(a.storage.min_free_mb, b.storage.min_free_mb);
  EXPECT_EQ(a.clicks.visitor_secret, b.clicks.visitor_secret);
  EXPECT_EQ(a.clicks.shard_count, b.clicks.shard_count);
  EXPECT_EQ(a.clicks.dedupe_capacity, b.clicks.dedupe_capacity);
  EXPECT_EQ(a.clicks.velocity_limit, b.clicks.velocity_limit);
  EXPECT_EQ(a.clicks.velocity_window_s, b.clicks.velocity_window_s);
  EXPECT_EQ(a.log.level, b.log.level);
  EXPECT_EQ(a.log.warn_interval_ms, b.log.warn_interval_ms);
  EXPECT_EQ(a.cluster.urls, b.cluster.urls);
  EXPECT_EQ(a.cluster.role, b.cluster.role);
  EXPECT_EQ(a.cluster.replicas, b.cluster.replicas);
  EXPECT_EQ(a.cluster.stream_max_age_days, b.cluster.stream_max_age_days);
  EXPECT_EQ(a.cluster.stream_max_bytes, b.cluster.stream_max_bytes);
  EXPECT_EQ(a.cluster.join_timeout_ms, b.cluster.join_timeout_ms);
  EXPECT_EQ(a.cluster.forward_batch, b.cluster.forward_batch);
  EXPECT_EQ(a.cluster.ack_wait_ms, b.cluster.ack_wait_ms);
  EXPECT_EQ(a.cluster.lease_ttl_s, b.cluster.lease_ttl_s);
  EXPECT_EQ(a.cluster.drain_timeout_ms, b.cluster.drain_timeout_ms);
  EXPECT_EQ(a.cluster.click_wait_ms, b.cluster.click_wait_ms);
  EXPECT_EQ(a.cluster.consumer_pending_mb, b.cluster.consumer_pending_mb);
  EXPECT_EQ(a.cluster.spool_keep_s, b.cluster.spool_keep_s);
  EXPECT_EQ(a.cluster.duplicate_window_s, b.cluster.duplicate_window_s);
}

TEST(ConfigTest, DefaultFileEqualsBuiltInDefaults) {
  std::string text = read_file(kDefaultToml);
  ASSERT_FALSE(text.empty()) << kDefaultToml;

  Config loaded = load_text(text);

  const Config defaults;
  expect_same_server(loaded.server, defaults.server);
  expect_same_rest(loaded, defaults);
}

TEST(ConfigTest, LoadFileReadsTheSameAsLoadText) {
  Config from_file = load_file(kDefaultToml);

  const Config defaults;
  expect_same_server(from_file.server, defaults.server);
  expect_same_rest(from_file, defaults);
}

TEST(ConfigTest, LoadFileThrowsForMissingFile) {
  EXPECT_THROW((void)load_file(kDefaultToml + ".missing"), ConfigError);
}

TEST(ConfigTest, EmptyTextGivesDefaults) {
  Config loaded = load_text("");

  const Config defaults;
  expect_same_server(loaded.server, defaults.server);
  expect_same_rest(loaded, defaults);
}

TEST(ConfigTest, ReadsGivenValues) {
  Config c = load_text(R"(
    [server]
    public_listen = "127.0.0.1:9000"
    io_threads = 8
    trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]
    [redirect]
    cookie_secure = true
    [storage]
    max_batch = 128
    [clicks]
    velocity_limit = 20
    [log]
    level = "debug"
  )");

  EXPECT_EQ(c.server.public_listen, "127.0.0.1:9000");
  EXPECT_EQ(c.server.io_threads, 8);
  EXPECT_EQ(c.server.trusted_proxies, (std::vector<std::string>{"10.0.0.0/8", "192.0.2.1"}));
  EXPECT_TRUE(c.redirect.cookie_secure);
  EXPECT_EQ(c.storage.max_batch, 128u);
  EXPECT_EQ(c.clicks.velocity_limit, 20u);
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.server.admin_listen, ServerConfig{}.admin_listen);
}

TEST(ConfigTest, ReadsTheClusterTable) {
  Config c = load_text(R"(
    [cluster]
    urls = "nats://10.0.0.1:4222,nats://10.0.0.2:4222"
    role = "edge"
    stream_max_age_days = 95
    stream_max_bytes = 5000000000000
    lease_ttl_s = 20
  )");
  EXPECT_EQ(c.cluster.urls, "nats://10.0.0.1:4222,nats://10.0.0.2:4222");
  EXPECT_EQ(c.cluster.role, "edge");
  EXPECT_EQ(c.cluster.stream_max_age_days, 95u);
  EXPECT_EQ(c.cluster.stream_max_bytes, 5'000'000'000'000u);
  EXPECT_EQ(c.cluster.lease_ttl_s, 20u);
  EXPECT_EQ(c.cluster.replicas, 3u);  // untouched keys keep their defaults
  EXPECT_NE(load_error("[cluster]\nmax_age = 3\n").find("cluster.max_age"), std::string::npos);
}

TEST(ConfigTest, RejectsUnknownKeyAndNamesIt) {
  EXPECT_NE(load_error("[server]\npublic_lisen = \"0.0.0.0:1\"\n").find("server.public_lisen"),
            std::string::npos);
  EXPECT_NE(load_error("[clicks]\nvelocity = 3\n").find("clicks.velocity"), std::string::npos);
  EXPECT_NE(load_error("[log]\nlevel = \"info\"\nformat = \"json\"\n").find("log.format"),
            std::string::npos);
}

TEST(ConfigTest, RejectsUnknownTableAndNamesIt) {
  EXPECT_NE(load_error("[storrage]\ndata_dir = \"/tmp\"\n").find("storrage"), std::string::npos);
  EXPECT_NE(load_error("top_level = 1\n").find("top_level"), std::string::npos);
}

TEST(ConfigTest, RejectsWrongTypesAndNamesTheKey) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"[server]\nio_threads = \"two\"\n", "server.io_threads"},
      {"[server]\npublic_listen = 8080\n", "server.public_listen"},
      {"[server]\ntrusted_proxies = \"10.0.0.0/8\"\n", "server.trusted_proxies"},
      {"[server]\ntrusted_proxies = [1, 2]\n", "server.trusted_proxies"},
      {"[redirect]\ncookie_secure = \"yes\"\n", "redirect.cookie_secure"},
      {"[storage]\nmax_batch = -1\n", "storage.max_batch"},
      {"[storage]\nmax_batch = 1.5\n", "storage.max_batch"},
      {"[clicks]\nshard_count = 5000000000\n", "clicks.shard_count"},
  };
  for (const auto& [toml, key] : cases) {
    EXPECT_NE(load_error(toml).find(key), std::string::npos) << toml;
  }
  EXPECT_NE(load_error("server = 3\n").find("[server]"), std::string::npos);
}

// TOML keeps booleans, integers and floats apart; a config that mixes them is a mistake.
TEST(ConfigTest, RejectsBooleansAndNumbersInPlaceOfEachOther) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"[redirect]\ncookie_secure = 1\n", "redirect.cookie_secure"},
      {"[server]\nio_threads = true\n", "server.io_threads"},
      {"[storage]\nmax_batch = 64.0\n", "storage.max_batch"},
  };
  for (const auto& [toml, key] : cases) {
    EXPECT_NE(load_error(toml).find(key), std::string::npos) << toml;
  }
}

TEST(ConfigTest, ReportsTomlSyntaxErrorsWithLine) {
  std::string message = load_error("[server]\nio_threads = = 2\n");

  EXPECT_NE(message.find("line 2"), std::string::npos) << message;
}

TEST(ConfigTest, ParsesDurability) {
  EXPECT_EQ(load_text("[storage]\ndurability = \"group\"\n").storage.durability,
            Durability::kGroup);
  EXPECT_EQ(load_text("[storage]\ndurability = \"async\"\n").storage.durability,
            Durability::kAsync);
  EXPECT_NE(load_error("[storage]\ndurability = \"sync\"\n").find("storage.durability"),
            std::string::npos);
  EXPECT_NE(load_error("[storage]\ndurability = \"Group\"\n"), "");
}

// Clears the EARND_* variables around each test, so the outcome does not depend on the shell.
class ConfigEnvironmentTest : public ::testing::Test {
 protected:
  static constexpr const char* kNames[] = {"EARND_ADMIN_KEY",     "EARND_VISITOR_SECRET",
                                           "EARND_PUBLIC_LISTEN", "EARND_ADMIN_LISTEN",
                                           "EARND_DATA_DIR",      "EARND_DURABILITY"};

  void SetUp() override { clear(); }

  void TearDown() override { clear(); }

  static void clear() {
    for (const char* name : kNames) {
      unsetenv(name);
    }
  }
};

TEST_F(ConfigEnvironmentTest, OverridesEveryVariable) {
  setenv("EARND_ADMIN_KEY", "admin-key-from-env-0123", 1);
  setenv("EARND_VISITOR_SECRET", "visitor-secret-from-env", 1);
  setenv("EARND_PUBLIC_LISTEN", "127.0.0.1:18080", 1);
  setenv("EARND_ADMIN_LISTEN", "127.0.0.1:18081", 1);
  setenv("EARND_DATA_DIR", "/var/lib/earnd", 1);
  setenv("EARND_DURABILITY", "async", 1);
  Config c = load_text("[server]\nadmin_key = \"admin-key-from-file-0123\"\n");

  apply_environment(c);

  EXPECT_EQ(c.server.admin_key, "admin-key-from-env-0123");
  EXPECT_EQ(c.clicks.visitor_secret, "visitor-secret-from-env");
  EXPECT_EQ(c.server.public_listen, "127.0.0.1:18080");
  EXPECT_EQ(c.server.admin_listen, "127.0.0.1:18081");
  EXPECT_EQ(c.storage.data_dir, "/var/lib/earnd");
  EXPECT_EQ(c.storage.durability, Durability::kAsync);
}

TEST_F(ConfigEnvironmentTest, LeavesFileValuesWhenUnsetOrEmpty) {
  setenv("EARND_ADMIN_KEY", "", 1);
  Config c = load_text("[server]\nadmin_key = \"admin-key-from-file-0123\"\n");

  apply_environment(c);

  EXPECT_EQ(c.server.admin_key, "admin-key-from-file-0123");
  EXPECT_EQ(c.storage.data_dir, StorageConfig{}.data_dir);
  EXPECT_EQ(c.storage.durability, Durability::kGroup);
}

TEST_F(ConfigEnvironmentTest, RejectsBadDurability) {
  setenv("EARND_DURABILITY", "fsync", 1);
  Config c;

  EXPECT_THROW(apply_environment(c), ConfigError);
}

class ConfigValidateTest : public ::testing::Test {
 protected:
  ConfigValidateTest() { config_.server.admin_key = "0123456789abcdef"; }

  Config config_;
};

TEST_F(ConfigValidateTest, AcceptsDefaultsWithAdminKey) {
  EXPECT_NO_THROW(validate(config_));
}

TEST_F(ConfigValidateTest, RejectsShortOrMissingAdminKey) {
  config_.server.admin_key = "0123456789abcde";  // 15 characters
  EXPECT_THROW(validate(config_), ConfigError);

  config_.server.admin_key.clear();
  EXPECT_THROW(validate(config_), ConfigError);
}

TEST_F(ConfigValidateTest, RejectsOutOfRangeValues) {
  auto rejects = [this](auto change) {
    Config c = config_;
    change(c);
    EXPECT_THROW(validate(c), ConfigError);
  };

  rejects([](Config& c) { c.server.io_threads = 0; });
  rejects([](Config& c) { c.server.max_header_bytes = 511; });
  rejects([](Config& c) { c.server.max_header_bytes = 61'441; });
  rejects([](Config& c) { c.storage.max_batch = 0; });
  rejects([](Config& c) { c.storage.queue_capacity = 15; });
  rejects([](Config& c) { c.clicks.shard_count = 257; });
  rejects([](Config& c) { c.clicks.velocity_window_s = 0; });
  rejects([](Config& c) { c.server.public_listen = "0.0.0.0"; });
  rejects([](Config& c) { c.server.admin_listen = "127.0.0.1:99999"; });
  rejects([](Config& c) { c.cluster.role = "coordinator"; });
  rejects([](Config& c) { c.cluster.replicas = 0; });
  rejects([](Config& c) { c.cluster.lease_ttl_s = 1; });
  rejects([](Config& c) { c.cluster.ack_wait_ms = 10; });
  rejects([](Config& c) { c.cluster.duplicate_window_s = 0; });
  rejects([](Config& c) { c.cluster.spool_keep_s = 86'401; });
}

TEST(SplitHostPortTest, SplitsIpv4AndNames) {
  EXPECT_EQ(split_host_port("127.0.0.1:8080"),
            (std::pair<std::string, std::uint16_t>{"127.0.0.1", 8080}));
  EXPECT_EQ(split_host_port("localhost:0"),
            (std::pair<std::string, std::uint16_t>{"localhost", 0}));
  EXPECT_EQ(split_host_port("0.0.0.0:65535"),
            (std::pair<std::string, std::uint16_t>{"0.0.0.0", 65535}));
}

TEST(SplitHostPortTest, StripsBracketsOfIpv6) {
  EXPECT_EQ(split_host_port("[::1]:80"), (std::pair<std::string, std::uint16_t>{"::1", 80}));
  EXPECT_EQ(split_host_port("[2001:db8::7]:443"),
            (std::pair<std::string, std::uint16_t>{"2001:db8::7", 443}));
}

TEST(SplitHostPortTest, RejectsBadPorts) {
  for (const char* text :
       {"localhost", "localhost:", "localhost:65536", "localhost:-1", "localhost:80x",
        "localhost:http", "[::1]", "localhost:99999999999999999999"}) {
    EXPECT_THROW(split_host_port(text), ConfigError) << text;
  }
}

}  // namespace
}  // namespace earnd::config
