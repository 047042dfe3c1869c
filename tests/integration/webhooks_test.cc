// Webhooks from the real earnd to a real receiver on loopback inside the test: the funnel's
// events arrive signed as Standard Webhooks says (checked with an independent HMAC), a receiver
// that is down or failing at first gets every event later under a stable webhook-id, a restart
// between attempts loses nothing, and a receiver that holds its connections open delays
// neither redirects nor conversions.

#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "../webhooks/hmac_reference.h"
#include "../webhooks/receiver.h"
#include "server_fixture.h"

namespace earnd::integration {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using webhooks::testing::ReceivedRequest;
using webhooks::testing::Receiver;
using webhooks::testing::reference_signature;

// Short retries so that a failed attempt is repeated within a fraction of a second; a long
// attempt timeout so that a held response is not cut off by earnd while a test runs.
std::string config_text(int max_in_flight) {
  return "[webhooks]\n"
         "allow_private = true\n"
         "first_retry_ms = 100\n"
         "max_retry_ms = 400\n"
         "give_up_after_h = 24\n"
         "timeout_ms = 20000\n"
         "max_in_flight = " +
         std::to_string(max_in_flight) + "\n";
}

// Every wait in this suite is bounded by this.
constexpr auto kDeadline = 15s;

// Polls pred every 20 ms until it holds or the deadline passes; returns its last value.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = kDeadline) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return pred();
    }
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

using Multiset = std::multiset<std::string>;

// The events the funnel of run_funnel() produces, by type. The refund is announced by the
// reward it reverses, not as an attributed conversion.
const Multiset kFunnelEvents = {
    "referrer.enrolled", "click.first",    "conversion.attributed", "conversion.attributed",
    "reward.created",    "reward.created", "reward.approved",       "reward.approved",
    "payout.created",    "payout.paid",    "reward.reversed",
};

class WebhooksTest : public EarndTest {
 protected:
  // Starts earnd with private targets allowed and creates program acme with a signup reward of
  // 5.00, a 20% sale commission, no hold and webhooks to url.
  void start_with_program(const std::string& url, int max_in_flight = 16) {
    use_config(config_text(max_in_flight));
    ASSERT_NO_FATAL_FAILURE(start_server());
    json::object program{
        {"id", kProgramId},
        {"currency", "USD"},
        {"destination", kDestination},
        {"allowed_hosts", json::array{"shop.example.com"}},
        {"rewards", json::parse(R"([{"event": "signup", "referrer": {"fixed_minor": 500}},
                                    {"event": "sale", "referrer": {"percent": 20}}])")},
        {"hold_days", 0},
        {"webhook_url", url}};
    HttpResponse r = admin("POST", "/v1/programs", json::serialize(program));
    ASSERT_EQ(r.status, 201) << r.error << r.body;
    json::value v = parse_json(r);
    program_key_ = std::string(v.at("program_key").as_string());
    secret_ = std::string(v.at("webhook_secret").as_string());
    ASSERT_TRUE(secret_.starts_with("whsec_")) << secret_;
  }

  // A click on code by a visitor of its own; returns the click id (empty, with a failure, when
  // the redirect was not a 302).
  std::string click(std::string_view code, std::string_view visitor) {
    HttpResponse r =
        visit("/r/" + std::string(code), std::string(kBrowserUa) + " v/" + std::string(visitor));
    EXPECT_EQ(r.status, 302) << r.error << r.body;
    return click_id_of(r);
  }

  HttpResponse convert(const json::object& body) {
    return fetch(
        public_endpoint(), "POST", "/v1/conversions",
        {{"Authorization", "Bearer " + program_key_}, {"Content-Type", "application/json"}},
        json::serialize(body));
  }

  // Enrols ana, clicks, signs up and buys (100.00) through that click, pays ana out and then
  // refunds half of the sale: every event type of the contract, kFunnelEvents.
  void run_funnel() {
    referrer_ = enrol("u_ana", "ana");
    click_id_ = click("ana", "1");
    ASSERT_FALSE(click_id_.empty());
    HttpResponse signup = convert({{"event_id", "su_1"},
                                   {"type", "signup"},
                                   {"click_id", click_id_},
                                   {"customer_id", "cus_1"}});
    ASSERT_EQ(signup.status, 201) << signup.error << signup.body;
    HttpResponse sale = convert({{"event_id", "ord_1"},
                                 {"type", "sale"},
                                 {"customer_id", "cus_1"},
                                 {"amount_minor", 10000},
                                 {"currency", "USD"}});
    ASSERT_EQ(sale.status, 201) << sale.error << sale.body;

    HttpResponse made = admin("POST", "/v1/payouts", R"({"program": "acme"})");
    ASSERT_EQ(made.status, 200) << made.error << made.body;
    json::value made_body = parse_json(made);
    const json::array& payouts = made_body.at("payouts").as_array();
    ASSERT_EQ(payouts.size(), 1u) << made.body;
    payout_id_ = std::string(payouts[0].at("id").as_string());
    HttpResponse paid = admin("POST", "/v1/payouts/" + payout_id_ + "/paid");
    ASSERT_EQ(paid.status, 200) << paid.error << paid.body;

    HttpResponse refund = convert({{"event_id", "rf_1"},
                                   {"type", "refund"},
                                   {"refund_of", "ord_1"},
                                   {"customer_id", "cus_1"},
                                   {"amount_minor", 5000},
                                   {"currency", "USD"}});
    ASSERT_EQ(refund.status, 201) << refund.error << refund.body;
  }

  // GET /v1/webhooks/deliveries of acme, up to 100 of them.
  json::array deliveries() {
    HttpResponse r = admin("GET", "/v1/webhooks/deliveries?program=acme&per_page=100");
    EXPECT_EQ(r.status, 200) << r.error << r.body;
    json::value v = parse_json(r);
    if (!v.is_object() || !v.at("deliveries").is_array()) {
      return {};
    }
    return v.at("deliveries").as_array();
  }

  // True when deliveries() lists n deliveries and each satisfies pred.
  bool all_deliveries(std::size_t n, const std::function<bool(const json::object&)>& pred) {
    json::array list = deliveries();
    if (list.size() != n) {
      return false;
    }
    for (const json::value& d : list) {
      if (!pred(d.as_object())) {
        return false;
      }
    }
    return true;
  }

  // The requests a receiver got, one per webhook-id. Repeats of an id must carry the same
  // body: the event is the same, only its attempt differs.
  static std::map<std::string, ReceivedRequest> by_id(const Receiver& receiver) {
    std::map<std::string, ReceivedRequest> out;
    for (const ReceivedRequest& r : receiver.requests()) {
      auto [it, inserted] = out.emplace(r.id, r);
      if (!inserted) {
        EXPECT_EQ(it->second.body, r.body) << "webhook-id " << r.id << " with two bodies";
      }
    }
    return out;
  }

  static Multiset types_of(const std::map<std::string, ReceivedRequest>& unique) {
    Multiset types;
    for (const auto& [id, r] : unique) {
      types.insert(type_of(r));
    }
    return types;
  }

  static std::string type_of(const ReceivedRequest& r) {
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    if (ec || !v.is_object() || !v.as_object().contains("type") || !v.at("type").is_string()) {
      return "<not an event: " + r.body + ">";
    }
    return std::string(v.at("type").as_string());
  }

  // Waits until the receiver has one request per id for every event of expected.
  bool receives(const Receiver& receiver, const Multiset& expected) {
    return eventually([&] { return types_of(by_id(receiver)) == expected; });
  }

  // The Standard Webhooks checks of one request, the signature computed independently.
  void expect_signed(const ReceivedRequest& r) {
    EXPECT_TRUE(r.id.starts_with("msg_")) << r.id;
    EXPECT_EQ(r.signature, reference_signature(secret_, r.id, r.timestamp, r.body))
        << "webhook-id " << r.id << " body " << r.body;
    EXPECT_EQ(r.content_type, "application/json");
    EXPECT_EQ(r.target, "/hook");

    // A receiver rejects timestamps more than five minutes off its clock.
    long long ts = 0;
    ASSERT_NO_THROW(ts = std::stoll(r.timestamp)) << r.timestamp;
    EXPECT_LE(std::llabs(ts - static_cast<long long>(std::time(nullptr))), 300) << r.timestamp;

    json::value v = json::parse(r.body);
    ASSERT_TRUE(v.is_object()) << r.body;
    const json::object& o = v.as_object();
    EXPECT_EQ(o.size(), 3u) << r.body;
    EXPECT_TRUE(o.contains("type") && o.at("type").is_string()) << r.body;
    EXPECT_TRUE(o.contains("timestamp") && o.at("timestamp").is_string()) << r.body;
    EXPECT_TRUE(o.contains("data") && o.at("data").is_object()) << r.body;
  }

  // The data of the one event of type in unique (a failure, and null, when not exactly one).
  static json::object data_of(const std::map<std::string, ReceivedRequest>& unique,
                              std::string_view type,
                              std::string_view event_id = {}) {
    auto text = [](const json::object& o, std::string_view key) {
      const json::value* v = o.if_contains(key);
      return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
    };
    std::vector<json::object> found;
    for (const auto& [id, r] : unique) {
      json::object o = json::parse(r.body).as_object();
      const json::object& data = o.at("data").as_object();
      if (text(o, "type") == type && (event_id.empty() || text(data, "event_id") == event_id)) {
        found.push_back(data);
      }
    }
    EXPECT_EQ(found.size(), 1u) << type << " " << event_id;
    return found.size() == 1 ? found[0] : json::object{};
  }

  std::string program_key_;
  std::string secret_;
  std::string referrer_;
  std::string click_id_;
  std::string payout_id_;
};

TEST_F(WebhooksTest, FunnelEventsArriveSignedWithTheirData) {
  Receiver receiver;
  ASSERT_NO_FATAL_FAILURE(start_with_program(receiver.url()));
  ASSERT_NO_FATAL_FAILURE(run_funnel());
  ASSERT_TRUE(receives(receiver, kFunnelEvents))
      << testing::PrintToString(types_of(by_id(receiver)));

  auto unique = by_id(receiver);
  for (const auto& [id, r] : unique) {
    expect_signed(r);
  }
  EXPECT_EQ(data_of(unique, "referrer.enrolled").at("id"), json::value(referrer_));
  EXPECT_EQ(data_of(unique, "referrer.enrolled").at("code"), "ana");
  EXPECT_EQ(data_of(unique, "click.first").at("referrer_id"), json::value(referrer_));
  EXPECT_EQ(data_of(unique, "click.first").at("click_id"), json::value(click_id_));
  EXPECT_EQ(data_of(unique, "conversion.attributed", "su_1").at("referrer_id"),
            json::value(referrer_));
  EXPECT_EQ(data_of(unique, "conversion.attributed", "su_1").at("click_id"),
            json::value(click_id_));
  EXPECT_EQ(data_of(unique, "conversion.attributed", "ord_1").at("amount_minor"), 10000);
  EXPECT_EQ(data_of(unique, "reward.created", "su_1").at("amount_minor"), 500);
  EXPECT_EQ(data_of(unique, "reward.created", "ord_1").at("amount_minor"), 2000);
  EXPECT_EQ(data_of(unique, "payout.created").at("id"), json::value(payout_id_));
  EXPECT_EQ(data_of(unique, "payout.created").at("amount_minor"), 2500);
  EXPECT_EQ(data_of(unique, "payout.paid").at("id"), json::value(payout_id_));
  EXPECT_EQ(data_of(unique, "reward.reversed").at("referrer_id"), json::value(referrer_));
}

TEST_F(WebhooksTest, DeliveryLogListsEachDeliveryWithItsAttempts) {
  Receiver receiver;
  ASSERT_NO_FATAL_FAILURE(start_with_program(receiver.url()));
  ASSERT_NO_FATAL_FAILURE(run_funnel());
  ASSERT_TRUE(receives(receiver, kFunnelEvents));
  ASSERT_TRUE(eventually([&] {
    return all_deliveries(kFunnelEvents.size(),
                          [](const json::object& d) { return d.at("state") == "delivered"; });
  })) << json::serialize(deliveries());

  auto unique = by_id(receiver);
  for (const json::value& v : deliveries()) {
    const json::object& d = v.as_object();
    std::string id(d.at("id").as_string());
    ASSERT_EQ(unique.count(id), 1u) << "listed but never received: " << id;
    EXPECT_EQ(d.at("type"), json::value(type_of(unique.at(id))));
    EXPECT_EQ(d.at("program"), "acme");
    EXPECT_TRUE(d.at("next_attempt_at").is_null());
    EXPECT_EQ(d.at("attempt_count").as_int64(), 1) << json::serialize(d);
    const json::array& attempts = d.at("attempts").as_array();
    ASSERT_EQ(attempts.size(), 1u) << json::serialize(d);
    EXPECT_EQ(attempts[0].at("status").as_int64(), 200);
    EXPECT_FALSE(d.contains("body")) << "the log shows no bodies";
  }
}

TEST_F(WebhooksTest, ReceiverDownAtFirstGetsEveryEventLaterUnderStableIds) {
  std::uint16_t port = Receiver::free_port();
  ASSERT_NO_FATAL_FAILURE(start_with_program("http://127.0.0.1:" + std::to_string(port) + "/hook"));
  ASSERT_NO_FATAL_FAILURE(run_funnel());
  const std::size_t n = kFunnelEvents.size();

  // The port is closed: each delivery fails twice, and stays pending with the reason logged.
  ASSERT_TRUE(eventually([&] {
    return all_deliveries(n, [](const json::object& d) {
      return d.at("state") == "pending" && d.at("attempt_count").as_int64() >= 2;
    });
  })) << json::serialize(deliveries());
  for (const json::value& d : deliveries()) {
    const json::object& first = d.at("attempts").as_array().at(0).as_object();
    EXPECT_FALSE(first.contains("status")) << json::serialize(d);
    EXPECT_NE(std::string(first.at("error").as_string()).find("connect"), std::string::npos)
        << json::serialize(d);
  }

  // Up now, but answering 503 to its first n requests: those ids must come again.
  Receiver receiver(port, [n](std::size_t i) { return i < n ? 503u : 200u; });
  ASSERT_TRUE(eventually([&] {
    return all_deliveries(n, [](const json::object& d) { return d.at("state") == "delivered"; });
  })) << json::serialize(deliveries());
  auto unique = by_id(receiver);
  EXPECT_EQ(types_of(unique), kFunnelEvents);
  std::vector<ReceivedRequest> all = receiver.requests();
  ASSERT_GT(all.size(), n);
  for (std::size_t i = 0; i < n; ++i) {
    bool repeated = false;
    for (std::size_t j = n; j < all.size(); ++j) {
      repeated = repeated || all[j].id == all[i].id;
    }
    EXPECT_TRUE(repeated) << "the 503 to " << all[i].id << " was not retried under its id";
  }
  for (const auto& [id, r] : unique) {
    expect_signed(r);
  }
}

TEST_F(WebhooksTest, RestartBetweenAttemptsStillDeliversEveryPendingEvent) {
  std::uint16_t port = Receiver::free_port();
  ASSERT_NO_FATAL_FAILURE(start_with_program("http://127.0.0.1:" + std::to_string(port) + "/hook"));
  ASSERT_NO_FATAL_FAILURE(run_funnel());
  const std::size_t n = kFunnelEvents.size();
  ASSERT_TRUE(eventually([&] {
    return all_deliveries(n, [](const json::object& d) {
      return d.at("state") == "pending" && d.at("attempt_count").as_int64() >= 1;
    });
  })) << json::serialize(deliveries());
  std::set<std::string> before;
  for (const json::value& d : deliveries()) {
    before.insert(std::string(d.at("id").as_string()));
  }

  ASSERT_EQ(stop_server(), 0);
  ASSERT_NO_FATAL_FAILURE(start_server());
  Receiver receiver(port);
  ASSERT_TRUE(receives(receiver, kFunnelEvents))
      << testing::PrintToString(types_of(by_id(receiver)));

  auto unique = by_id(receiver);
  std::set<std::string> received;
  for (const auto& [id, r] : unique) {
    received.insert(id);
    expect_signed(r);
  }
  EXPECT_EQ(received, before) << "the ids after the restart are those staged before it";
  EXPECT_TRUE(eventually([&] {
    return all_deliveries(n, [](const json::object& d) { return d.at("state") == "delivered"; });
  })) << json::serialize(deliveries());
}

TEST_F(WebhooksTest, StopDuringHeldAttemptsLosesNoneAndKeepsTheirIds) {
  Receiver receiver;
  receiver.hold();
  ASSERT_NO_FATAL_FAILURE(start_with_program(receiver.url(), 4));
  ASSERT_NO_FATAL_FAILURE(run_funnel());
  ASSERT_TRUE(eventually([&] { return receiver.held() == 4; })) << receiver.held();
  std::set<std::string> cut_off;
  for (const ReceivedRequest& r : receiver.requests()) {
    cut_off.insert(r.id);
  }

  // SIGTERM with four attempts unanswered: earnd exits cleanly, and they stay pending.
  ASSERT_EQ(stop_server(), 0);
  receiver.release();
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_TRUE(receives(receiver, kFunnelEvents))
      << testing::PrintToString(types_of(by_id(receiver)));
  std::vector<ReceivedRequest> all = receiver.requests();
  for (const std::string& id : cut_off) {
    auto sent = std::count_if(all.begin(), all.end(), [&](const auto& r) { return r.id == id; });
    EXPECT_GE(sent, 2) << "the attempt cut off by the stop was not made again as " << id;
  }
  for (const auto& [id, r] : by_id(receiver)) {
    expect_signed(r);
  }
}

TEST_F(WebhooksTest, ReceiverHoldingConnectionsOpenDelaysNeitherRedirectsNorConversions) {
  // Two attempts at once, both held: every slot of the delivery thread is taken.
  Receiver receiver;
  receiver.hold();
  ASSERT_NO_FATAL_FAILURE(start_with_program(receiver.url(), 2));
  std::string ana = enrol("u_ana", "ana");
  ASSERT_TRUE(eventually([&] { return receiver.held() >= 1; }));

  constexpr int kVisitors = 10;
  for (int i = 0; i < kVisitors; ++i) {
    std::string id = click("ana", std::to_string(i));
    ASSERT_FALSE(id.empty());
    HttpResponse r = convert({{"event_id", "su_" + std::to_string(i)},
                              {"type", "signup"},
                              {"click_id", id},
                              {"customer_id", "cus_" + std::to_string(i)}});
    ASSERT_EQ(r.status, 201) << r.error << r.body;
    EXPECT_EQ(parse_json(r).at("referrer_id"), json::value(ana));
  }

  // Every request that reached the receiver is still unanswered: the redirects and
  // conversions above completed while earnd's deliveries were held open.
  EXPECT_GE(receiver.held(), 1u);
  EXPECT_EQ(receiver.held(), receiver.count());
  EXPECT_LE(receiver.count(), 2u) << "more attempts at once than max_in_flight";

  receiver.release();
  Multiset expected = {"referrer.enrolled", "click.first"};
  for (int i = 0; i < kVisitors; ++i) {
    expected.insert({"conversion.attributed", "reward.created", "reward.approved"});
  }
  EXPECT_TRUE(receives(receiver, expected)) << testing::PrintToString(types_of(by_id(receiver)));
  for (const auto& [id, r] : by_id(receiver)) {
    expect_signed(r);
  }
}

}  // namespace
}  // namespace earnd::integration
