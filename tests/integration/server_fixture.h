#pragma once

// The base fixture of the integration suites: a temporary directory per test (data directory,
// server log, config file, command output), an earnd child process on loopback, and helpers for
// the admin API, for clicks and for reading back what earnd stored through `earnctl export`.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "earnd_process.h"
#include "http_client.h"

namespace earnd::integration {

inline constexpr std::string_view kAdminKey = "integration-test-admin-key-0123456789";
inline constexpr std::string_view kBrowserUa =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36";
inline constexpr std::string_view kGooglebotUa =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

// The program every suite creates: destination with its own parameter and a fragment, and a
// cookie lifetime unlike the default so that Max-Age proves it is read from the program.
inline constexpr std::string_view kProgramId = "acme";
inline constexpr std::string_view kDestination = "https://shop.example.com/welcome?src=ref#top";
inline constexpr int kCookieDays = 7;

// One row of `earnctl export clicks`.
struct ExportedClick {
  std::string id;
  std::uint64_t ts_ms = 0;
  std::string program;
  std::string referrer_id;
  std::string code;
  std::string visitor_hash;
  bool unique = false;
  std::string reason;
};

// The value of query parameter name in a URL (up to its fragment); empty when absent.
std::string query_param(std::string_view url, std::string_view name);

// How many times query parameter name occurs in a URL.
int query_param_count(std::string_view url, std::string_view name);

// The click id a 302 carried in its Location (the earnd_cid parameter).
std::string click_id_of(const HttpResponse& redirect);

// True for a click id as API.md describes it: 26 lower-case Crockford base32 characters.
bool looks_like_click_id(std::string_view id);

class EarndTest : public ::testing::Test {
 protected:
  EarndTest();
  ~EarndTest() override;

  // Starts earnd on the test's data directory (again after a stop, on the same data). A fatal
  // failure when it does not come up: call it through ASSERT_NO_FATAL_FAILURE.
  void start_server(std::vector<std::string> extra_args = {});

  // SIGTERM and wait; returns earnd's exit code (-1 when it had to be killed).
  int stop_server();

  // Makes later starts read this TOML text through --config.
  void use_config(std::string_view toml);

  EarndProcess& server() { return *server_; }

  const Endpoint& public_endpoint() const { return server_->public_endpoint(); }

  const Endpoint& admin_endpoint() const { return server_->admin_endpoint(); }

  const std::filesystem::path& scratch_dir() const { return temp_.path(); }

  std::filesystem::path data_dir() const { return temp_.path() / "data"; }

  // One admin request with the Bearer key (none when key is empty) on a fresh connection.
  HttpResponse admin(std::string_view method,
                     std::string_view target,
                     std::string_view body = {},
                     std::string_view key = kAdminKey);

  // One GET (or HEAD) of a public target on a fresh connection, with the given user agent.
  HttpResponse visit(std::string_view target,
                     std::string_view user_agent = kBrowserUa,
                     std::string_view method = "GET");

  // Creates program kProgramId (or id); a non-fatal failure unless it answers 201.
  void create_program(std::string_view id = kProgramId);

  // Enrols a referrer with the given link code; returns its id (empty on failure).
  std::string enrol(std::string_view external_id,
                    std::string_view code,
                    std::string_view program = kProgramId);

  // Runs `earnctl export clicks --data-dir` on the data directory (the server stopped) and
  // parses its CSV; a non-fatal failure when earnctl fails or prints something else.
  std::vector<ExportedClick> export_clicks();

 private:
  TempDir temp_;
  std::filesystem::path config_file_;
  std::unique_ptr<EarndProcess> server_;
};

// Parses a JSON body; a null value (and a non-fatal failure) when it is not JSON.
boost::json::value parse_json(const HttpResponse& r);

}  // namespace earnd::integration
