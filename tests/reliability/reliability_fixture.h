#pragma once

// The fixture of the server-level reliability suites: the integration fixture (a real earnd on
// loopback) plus a program that rewards signups, so that a test can count conversions and the
// ledger entries they made.

#include <map>
#include <string>
#include <string_view>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "reliability_env.h"
#include "server_fixture.h"

namespace earnd::reliability {

using integration::EarndTest;
using integration::HttpConnection;
using integration::HttpResponse;

inline constexpr std::int64_t kSignupRewardMinor = 100;

// The JSON body of a signup conversion.
inline std::string signup_body(std::string_view event_id, std::string_view click_id) {
  return boost::json::serialize(
      boost::json::object{{"event_id", event_id},
                          {"type", "signup"},
                          {"click_id", click_id},
                          {"customer_id", "cus_" + std::string(event_id)}});
}

class ReliabilityTest : public EarndTest {
 protected:
  // Creates program "acme" (signups earn kSignupRewardMinor, no hold) and referrer "ana";
  // keeps the program key and the referrer id.
  void create_rewarding_program() {
    boost::json::object program = {
        {"id", "acme"},
        {"name", "Acme"},
        {"currency", "USD"},
        {"destination", integration::kDestination},
        {"allowed_hosts", boost::json::array{"shop.example.com"}},
        {"attribution",
         {{"model", "last_click"},
          {"window_days", 30},
          {"cookie_days", 7},
          {"dedupe_minutes", 60}}},
        {"rewards", boost::json::array{{{"event", "signup"},
                                        {"referrer", {{"fixed_minor", kSignupRewardMinor}}}}}},
        {"hold_days", 0},
    };
    HttpResponse r = admin("POST", "/v1/programs", boost::json::serialize(program));
    ASSERT_EQ(r.status, 201) << r.error << r.body;
    program_key_ = std::string(integration::parse_json(r).at("program_key").as_string());
    publishable_key_ = std::string(integration::parse_json(r).at("publishable_key").as_string());
    referrer_id_ = enrol("u_17", "ana");
    ASSERT_FALSE(referrer_id_.empty());
  }

  // Headers of a conversion request with the program key.
  integration::Headers conversion_headers() const {
    return {{"Authorization", "Bearer " + program_key_}, {"Content-Type", "application/json"}};
  }

  // The ledger's referrer entries, counted by event id.
  std::map<std::string, int> rewards_by_event() {
    std::map<std::string, int> out;
    HttpResponse r = admin("GET", "/v1/referrers/" + referrer_id_ + "/ledger");
    EXPECT_EQ(r.status, 200) << r.body;
    boost::json::value v = integration::parse_json(r);
    if (!v.is_object()) {
      return out;
    }
    for (const auto& e : v.at("entries").as_array()) {
      if (e.at("kind") == "referrer") {
        out[std::string(e.at("event_id").as_string())] += 1;
      }
    }
    return out;
  }

  std::string program_key_;
  std::string publishable_key_;
  std::string referrer_id_;
};

}  // namespace earnd::reliability
