// Security properties that can be checked from outside: no raw client address and no raw
// program key ever reaches the data directory or the log, the admin listener is on loopback by
// default and earnd refuses to start without an admin key, and the click cookie carries
// HttpOnly, SameSite=Lax and, where configured, Secure.

#include <arpa/inet.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "earnd/config/config.h"
#include "reliability_fixture.h"

namespace earnd::reliability {
namespace {

using integration::click_id_of;

// Documentation addresses (RFC 5737, RFC 3849), so a hit cannot come from elsewhere.
const std::vector<std::string> kClientV4 = {"203.0.113.77", "198.51.100.23", "192.0.2.199"};
const std::vector<std::string> kClientV6 = {"2001:db8::beef:77", "2001:db8:85a3::8a2e:370:7334"};

// Every file under dir (and the extra files), read whole.
std::vector<std::pair<std::string, std::string>> read_tree(const std::filesystem::path& dir) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) {
      std::ifstream in(e.path(), std::ios::binary);
      out.emplace_back(e.path().string(), std::string(std::istreambuf_iterator<char>(in), {}));
    }
  }
  return out;
}

// The text form and the network-order bytes of an address.
std::vector<std::string> forms_of(const std::string& address) {
  std::vector<std::string> forms{address};
  unsigned char bytes[16];
  if (::inet_pton(AF_INET, address.c_str(), bytes) == 1) {
    forms.emplace_back(reinterpret_cast<char*>(bytes), 4);
  } else if (::inet_pton(AF_INET6, address.c_str(), bytes) == 1) {
    forms.emplace_back(reinterpret_cast<char*>(bytes), 16);
  }
  return forms;
}

class SecurityTest : public ReliabilityTest {
 protected:
  // Starts earnd behind a trusted proxy with a per-client limit of 1 conversion a second
  // (bucket 10) and no per-program limit, then posts 15 signups, the i-th carrying the
  // X-Forwarded-For lines forwarded_for(i). Returns the count of each status.
  template <typename ForwardedFor>
  std::map<int, int> signups_through_proxy(const std::string& prefix, ForwardedFor forwarded_for) {
    use_config(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nconversion_rate_per_client = 1\n"
        "conversion_rate_per_program = 0\nconversion_burst_s = 10\n");
    start_server();
    create_rewarding_program();
    std::map<int, int> statuses;
    for (int i = 0; i < 15; ++i) {
      integration::Headers h = conversion_headers();
      for (const std::string& line : forwarded_for(i)) {
        h.emplace_back("X-Forwarded-For", line);
      }
      HttpResponse r =
          integration::fetch(public_endpoint(), "POST", "/v1/conversions", h,
                             boost::json::serialize(boost::json::object{
                                 {"event_id", prefix + std::to_string(i)}, {"type", "signup"}}));
      statuses[r.status] += 1;
    }
    return statuses;
  }
};

TEST_F(SecurityTest, DataDirectoryAndLogHoldNoRawClientAddress) {
  use_config("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  std::vector<std::string> all = kClientV4;
  all.insert(all.end(), kClientV6.begin(), kClientV6.end());

  int clicks = 0, n = 0;
  for (const auto& ip : all) {
    for (int i = 0; i < 20; ++i) {
      HttpResponse r = integration::fetch(
          public_endpoint(), "GET", "/r/ana?utm_source=sec",
          {{"User-Agent", std::string(integration::kBrowserUa)}, {"X-Forwarded-For", ip}});
      ASSERT_EQ(r.status, 302);
      clicks += !click_id_of(r).empty();
    }
    HttpResponse conv = integration::fetch(
        public_endpoint(), "POST", "/v1/conversions",
        {{"Authorization", "Bearer " + program_key_}, {"X-Forwarded-For", ip}},
        boost::json::serialize(boost::json::object{{"event_id", "ev_" + std::to_string(n)},
                                                   {"type", "signup"},
                                                   {"customer_id", "cus_" + std::to_string(n)}}));
    ++n;
    EXPECT_EQ(conv.status, 201) << conv.body;
  }
  // Clicks and conversions reach disk, also in SST files, before the search.
  ASSERT_EQ(stop_server(), 0);
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_EQ(stop_server(), 0);

  auto files = read_tree(data_dir());
  std::ifstream log_in(scratch_dir() / "earnd.log", std::ios::binary);
  files.emplace_back("earnd.log", std::string(std::istreambuf_iterator<char>(log_in), {}));
  std::size_t bytes = 0;
  int hits = 0;
  for (const auto& [name, content] : files) {
    bytes += content.size();
    for (const auto& ip : all) {
      for (const auto& form : forms_of(ip)) {
        if (content.find(form) != std::string::npos) {
          ADD_FAILURE() << name << " holds client address " << ip
                        << (form == ip ? " as text" : " in binary");
          ++hits;
        }
      }
    }
  }
  EXPECT_EQ(clicks, static_cast<int>(all.size()) * 20);
  EXPECT_GT(files.size(), 5u);
  report_figures("raw_ip_search",
                 "addresses=" + std::to_string(all.size()) + " clicks=" + std::to_string(clicks) +
                     " files=" + std::to_string(files.size()) + " bytes=" + std::to_string(bytes) +
                     " hits=" + std::to_string(hits));
}

TEST_F(SecurityTest, ProgramKeyIsStoredOnlyAsItsHash) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  HttpResponse rotated = admin("POST", "/v1/programs/acme/keys");
  ASSERT_TRUE(rotated.status == 200 || rotated.status == 201) << rotated.body;
  std::string second_key(integration::parse_json(rotated).at("program_key").as_string());
  ASSERT_EQ(stop_server(), 0);
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_EQ(stop_server(), 0);

  for (const auto& [name, content] : read_tree(data_dir())) {
    EXPECT_EQ(content.find(program_key_), std::string::npos) << name << " holds the first key";
    EXPECT_EQ(content.find(second_key), std::string::npos) << name << " holds the rotated key";
  }
}

TEST_F(SecurityTest, AdminListenerIsLoopbackByDefaultAndNeedsAKey) {
  config::Config defaults;
  EXPECT_EQ(config::split_host_port(defaults.server.admin_listen).first, "127.0.0.1");
  config::Config file = config::load_file(std::string(EARND_SOURCE_DIR) + "/config/default.toml");
  EXPECT_EQ(config::split_host_port(file.server.admin_listen).first, "127.0.0.1");

  // Without EARND_ADMIN_KEY (the runner clears EARND_* variables) earnd does not start.
  auto r = integration::run_command(
      {std::string(EARND_BIN_DIR) + "/earnd", "--data-dir", data_dir().string(), "--public-listen",
       "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
      scratch_dir());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("admin"), std::string::npos) << r.out << r.err;
}

TEST_F(SecurityTest, ClickCookieIsHttpOnlyLaxAndSecureWhenConfigured) {
  use_config("[redirect]\ncookie_secure = true\n");
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  HttpResponse r = visit("/r/ana");
  ASSERT_EQ(r.status, 302);
  std::string cookie = r.header("Set-Cookie").value_or("");

  EXPECT_TRUE(cookie.starts_with("earnd_cid=" + click_id_of(r) + ";")) << cookie;
  EXPECT_NE(cookie.find("; HttpOnly"), std::string::npos) << cookie;
  EXPECT_NE(cookie.find("; SameSite=Lax"), std::string::npos) << cookie;
  EXPECT_NE(cookie.find("; Secure"), std::string::npos) << cookie;
  EXPECT_NE(cookie.find("; Path=/"), std::string::npos) << cookie;
}

// Conversions are limited per client address (before the key is even looked at) and per
// program: 1 per second on average for both here, with buckets of 10 and 20.
TEST_F(SecurityTest, LimitsConversionsPerClientAndPerProgram) {
  use_config(
      "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nconversion_rate_per_client = 1\n"
      "conversion_rate_per_program = 1\nconversion_burst_s = 10\n");
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  // The program's bucket holds 20 here: the per-program limit is 1/s with 20 s of burst.
  ASSERT_EQ(admin("GET", "/v1/programs/acme").status, 200);
  int n = 0;
  auto send = [&](const std::string& client, int count, std::map<int, int>& statuses) {
    for (int i = 0; i < count; ++i) {
      HttpResponse r = integration::fetch(
          public_endpoint(), "POST", "/v1/conversions",
          {{"Authorization", "Bearer " + program_key_}, {"X-Forwarded-For", client}},
          boost::json::serialize(
              boost::json::object{{"event_id", "rl_" + std::to_string(n++)}, {"type", "signup"}}));
      statuses[r.status] += 1;
      if (r.status == 429) {
        EXPECT_EQ(integration::parse_json(r).at("error").at("code"), "rate_limited");
        EXPECT_TRUE(r.header("Retry-After").has_value());
      }
    }
  };
  std::map<int, int> a, b;
  send("203.0.113.1", 15, a);
  send("203.0.113.2", 15, b);

  // A refill of one token per second may add one acceptance to each while the test runs.
  EXPECT_GE(a[201], 10);
  EXPECT_LE(a[201], 11);
  EXPECT_EQ(a[201] + a[429], 15);
  EXPECT_GE(b[429], 4) << "the second client passed the per-program limit";
  EXPECT_EQ(b[201] + b[429], 15);
  EXPECT_LE(a[201] + b[201], 10 * 2 + 2) << "more than the program's bucket";
  report_figures("conversion_rate_limit", "sent=30 accepted=" + std::to_string(a[201] + b[201]) +
                                              " refused_429=" + std::to_string(a[429] + b[429]));
}

// A proxy that adds its own X-Forwarded-For line (HAProxy's option forwardfor) puts it after the
// client's: the lines are one list, read from the right. A client that sends a line of its own
// with a new address each time is still one client to the per-client limit (1/s, bucket 10).
TEST_F(SecurityTest, ReadsEveryForwardedForLineAsOneList) {
  auto statuses = signups_through_proxy("xff_", [](int i) {
    // The client's own line, then the proxy's.
    return std::vector<std::string>{"6.6.6." + std::to_string(i + 1), "198.51.100.1"};
  });
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_GE(statuses[201], 10);
  EXPECT_LE(statuses[201], 11) << "a spoofed first line made the client look like many";
  EXPECT_EQ(statuses[201] + statuses[429], 15);
}

// The publishable key is public (earnd.js sends it from browsers): it may report signups only,
// which are kept under "pk:" + their event id and earn nothing. So it can neither read a
// conversion the merchant reported with the secret key, nor take its event id first, nor
// farm signup rewards; the secret key may not use the "pk:" prefix. A browser signup still
// binds its customer, so the merchant's later sale is attributed.
TEST_F(SecurityTest, PublishableKeyNeitherReadsNorTakesTheMerchantsConversions) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  auto browser = [&](boost::json::object body) {
    body["publishable_key"] = publishable_key_;
    return integration::fetch(public_endpoint(), "POST", "/v1/conversions",
                              {{"Content-Type", "text/plain"}}, boost::json::serialize(body));
  };
  auto server = [&](const boost::json::object& body) {
    return integration::fetch(public_endpoint(), "POST", "/v1/conversions", conversion_headers(),
                              boost::json::serialize(body));
  };
  HttpResponse click = visit("/r/ana", integration::kBrowserUa);
  ASSERT_EQ(click.status, 302);
  std::string click_id = click_id_of(click);

  // The merchant's own signup is paid; its body is not readable with the publishable key.
  HttpResponse own = server({{"event_id", "order-77"},
                             {"type", "signup"},
                             {"click_id", click_id},
                             {"customer_id", "cus_1"}});
  ASSERT_EQ(own.status, 201) << own.body;
  EXPECT_EQ(integration::parse_json(own).at("rewards").as_array().size(), 1u);
  for (const char* type : {"refund", "sale", "bogus"}) {
    HttpResponse r = browser({{"event_id", "order-77"}, {"type", type}});
    EXPECT_EQ(r.status, 403) << type << ": " << r.body;
    EXPECT_EQ(r.body.find("cus_1"), std::string::npos) << r.body;
  }
  HttpResponse same_id = browser({{"event_id", "order-77"}, {"type", "signup"}});
  EXPECT_EQ(same_id.status, 201) << "answered with the merchant's conversion: " << same_id.body;
  EXPECT_EQ(same_id.body.find("cus_1"), std::string::npos) << same_id.body;
  EXPECT_EQ(integration::parse_json(same_id).at("event_id"), "pk:order-77");

  // Taken first from the browser, an id stays free for the merchant's sale.
  HttpResponse squat = browser({{"event_id", "ord_2001"}, {"type", "signup"}});
  ASSERT_EQ(squat.status, 201) << squat.body;
  HttpResponse later = server({{"event_id", "ord_2001"}, {"type", "signup"}});
  EXPECT_EQ(later.status, 201) << "the merchant's conversion was taken as a repeat: " << later.body;
  EXPECT_EQ(integration::parse_json(later).at("duplicate"), false);
  HttpResponse reserved = server({{"event_id", "pk:ord_2001"}, {"type", "signup"}});
  EXPECT_EQ(reserved.status, 400) << reserved.body;

  // Browser signups earn nothing, but bind their customer to the click's referrer.
  for (int i = 0; i < 5; ++i) {
    HttpResponse r = browser({{"event_id", "farm_" + std::to_string(i)},
                              {"type", "signup"},
                              {"click_id", click_id},
                              {"customer_id", "cus_farm_" + std::to_string(i)}});
    ASSERT_EQ(r.status, 201) << r.body;
    boost::json::value v = integration::parse_json(r);
    EXPECT_EQ(v.at("attributed"), true);
    EXPECT_TRUE(v.at("rewards").as_array().empty()) << r.body;
  }
  HttpResponse repeat = browser({{"event_id", "farm_0"}, {"type", "signup"}});
  EXPECT_EQ(repeat.status, 200);
  EXPECT_EQ(integration::parse_json(repeat).at("duplicate"), true);
  auto rewards = rewards_by_event();
  EXPECT_EQ(rewards.size(), 1u) << "only the merchant's signup is paid";
  EXPECT_EQ(rewards.count("order-77"), 1u);
  HttpResponse sale = server({{"event_id", "sale_1"},
                              {"type", "sale"},
                              {"customer_id", "cus_farm_3"},
                              {"amount_minor", 1000},
                              {"currency", "USD"}});
  ASSERT_EQ(sale.status, 201) << sale.body;
  EXPECT_EQ(integration::parse_json(sale).at("match"), "customer_binding");
}

// An IPv6 client usually holds a whole /64: its addresses are one client to the per-client
// limit (1/s, bucket 10), so walking through them does not buy more conversions.
TEST_F(SecurityTest, CountsAnIpv6SlashSixtyFourAsOneClient) {
  auto statuses = signups_through_proxy("v6_", [](int i) {
    return std::vector<std::string>{"2001:db8:1:2::" + std::to_string(i + 1)};
  });
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_GE(statuses[201], 10);
  EXPECT_LE(statuses[201], 11) << "each address of the /64 got its own budget";
  // Another /64 has its own.
  integration::Headers h = conversion_headers();
  h.emplace_back("X-Forwarded-For", "2001:db8:1:3::1");
  EXPECT_EQ(integration::fetch(public_endpoint(), "POST", "/v1/conversions", h,
                               R"({"event_id": "v6_other", "type": "signup"})")
                .status,
            201);
}

}  // namespace
}  // namespace earnd::reliability
