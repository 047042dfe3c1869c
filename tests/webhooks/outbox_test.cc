#include "earnd/webhooks/outbox.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "earnd/links/catalog.h"
#include "earnd/store/store.h"
#include "hmac_reference.h"
#include "receiver.h"

namespace earnd::webhooks {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::Receiver;
using ::testing::StartsWith;

bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 15s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::uint64_t num(const json::value& v) {
  return v.to_number<std::uint64_t>();
}

std::string str(const json::value& v) {
  return std::string(v.as_string());
}

// A real store in a temporary directory, a catalog over it and an outbox under test.
class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "earnd_webhooks_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    store_ = store::Store::open({.data_dir = dir_, .block_cache_mb = 8});
    catalog_ = std::make_unique<links::Catalog>(*store_, "http://127.0.0.1:1");
  }

  void TearDown() override {
    outbox_.reset();
    catalog_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Creates a program with this webhook URL ("" for none) and returns its webhook secret.
  std::string add_program(std::string_view id, std::string_view url) {
    json::object body{{"id", id},
                      {"currency", "USD"},
                      {"allowed_hosts", json::array{"shop.example.com"}},
                      {"destination", "https://shop.example.com/"}};
    if (!url.empty()) {
      body["webhook_url"] = url;
    }
    links::AdminReply r = catalog_->create_program(body);
    EXPECT_EQ(r.status, 201u) << json::serialize(r.body);
    return r.status == 201 ? str(r.body.at("webhook_secret")) : "";
  }

  static OutboxOptions fast() {
    return {.allow_private = true,
            .first_retry_ms = 100,
            .max_retry_ms = 1'000,
            .give_up_after_ms = 60'000,
            .timeout_ms = 2'000,
            .max_in_flight = 16};
  }

  Outbox& open_outbox(OutboxOptions options = fast()) {
    outbox_ = std::make_unique<Outbox>(*store_, *catalog_, options);
    return *outbox_;
  }

  static Event event(std::string_view program, std::string_view type = "click.first") {
    return Event{.program = std::string(program),
                 .type = std::string(type),
                 .data = json::object{{"referrer_id", "r_1"}, {"code", "ana"}}};
  }

  // Stages and commits like a caller whose events ride on its own write; returns the ids.
  std::vector<std::string> send(const std::vector<Event>& events) {
    store::Store::DocBatch batch;
    std::vector<std::string> ids = outbox_->stage(batch, events);
    EXPECT_FALSE(store_->write(batch, true));
    outbox_->committed(ids);
    return ids;
  }

  json::object list(std::string_view program = "",
                    std::string_view status = "",
                    std::size_t page = 1,
                    std::size_t per_page = 100) {
    auto [code, body] = outbox_->list(program, status, page, per_page);
    EXPECT_EQ(code, 200u) << body;
    return json::parse(body).as_object();
  }

  // The listed form of one delivery (an empty object when it is not listed).
  json::object delivery(const std::string& id) {
    json::object all = list();
    for (const json::value& d : all.at("deliveries").as_array()) {
      if (d.at("id").as_string() == id) {
        return d.as_object();
      }
    }
    return {};
  }

  std::size_t total(std::string_view status) { return num(list("", status).at("total")); }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<links::Catalog> catalog_;
  std::unique_ptr<Outbox> outbox_;
};

TEST_F(OutboxTest, DeliversASignedEvent) {
  Receiver receiver;
  std::string secret = add_program("acme", receiver.url());
  open_outbox().start();
  std::vector<std::string> ids = send({event("acme", "conversion.attributed")});
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_THAT(ids[0], StartsWith("msg_"));
  ASSERT_TRUE(receiver.wait_for(1, 10s));

  testing::ReceivedRequest r = receiver.requests()[0];
  EXPECT_EQ(r.target, "/hook");
  EXPECT_EQ(r.id, ids[0]);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.user_agent, "earnd-webhooks/0.1");
  EXPECT_EQ(r.signature, testing::reference_signature(secret, r.id, r.timestamp, r.body));
  EXPECT_NEAR(std::stoll(r.timestamp), std::time(nullptr), 5);
  json::object body = json::parse(r.body).as_object();
  EXPECT_EQ(body.at("type"), "conversion.attributed");
  EXPECT_THAT(str(body.at("timestamp")), HasSubstr("T"));
  EXPECT_EQ(body.at("data").at("code"), "ana");

  ASSERT_TRUE(eventually([&] { return str(delivery(ids[0]).at("state")) == "delivered"; }));
  json::object d = delivery(ids[0]);
  EXPECT_EQ(num(d.at("attempts").as_array()[0].at("status")), 200u);
  EXPECT_TRUE(d.at("next_attempt_at").is_null());
  EXPECT_EQ(outbox_->stats().delivered, 1u);
}

TEST_F(OutboxTest, StagesNothingForAProgramWithoutWebhookUrl) {
  add_program("quiet", "");
  open_outbox();
  store::Store::DocBatch batch;
  EXPECT_TRUE(outbox_->stage(batch, {event("quiet"), event("no-such-program")}).empty());
  EXPECT_TRUE(batch.puts.empty());
  EXPECT_FALSE(outbox_->emit({event("quiet")}));
  EXPECT_EQ(total(""), 0u);
}

TEST_F(OutboxTest, DeliversOnceAReceiverThatWasDownComesUp) {
  std::uint16_t port = Receiver::free_port();
  add_program("acme", "http://127.0.0.1:" + std::to_string(port) + "/hook");
  open_outbox().start();
  std::vector<std::string> ids = send({event("acme")});
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(outbox_->stats().delivered, 0u);

  Receiver receiver(port);
  ASSERT_TRUE(receiver.wait_for(1, 10s));
  EXPECT_EQ(receiver.requests()[0].id, ids[0]);
  ASSERT_TRUE(eventually([&] { return str(delivery(ids[0]).at("state")) == "delivered"; }));
  json::array attempts = delivery(ids[0]).at("attempts").as_array();
  ASSERT_GE(attempts.size(), 2u);
  EXPECT_THAT(str(attempts[0].at("error")), StartsWith("connect: "));
  EXPECT_EQ(num(attempts.back().at("status")), 200u);
}

TEST_F(OutboxTest, RetriesServerErrorsWithTheSameWebhookId) {
  Receiver receiver(0, [](std::size_t n) { return n < 2 ? 500u : 200u; });
  std::string secret = add_program("acme", receiver.url());
  open_outbox().start();
  std::vector<std::string> ids = send({event("acme")});
  ASSERT_TRUE(receiver.wait_for(3, 10s));

  for (const testing::ReceivedRequest& r : receiver.requests()) {
    EXPECT_EQ(r.id, ids[0]);
    EXPECT_EQ(r.signature, testing::reference_signature(secret, r.id, r.timestamp, r.body));
  }
  ASSERT_TRUE(eventually([&] { return str(delivery(ids[0]).at("state")) == "delivered"; }));
  json::array attempts = delivery(ids[0]).at("attempts").as_array();
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_EQ(num(attempts[0].at("status")), 500u);
  EXPECT_EQ(num(attempts[1].at("status")), 500u);
  EXPECT_EQ(num(attempts[2].at("status")), 200u);
  EXPECT_EQ(receiver.count(), 3u);
}

TEST_F(OutboxTest, DeliversPendingEventsAfterARestart) {
  std::uint16_t port = Receiver::free_port();
  add_program("acme", "http://127.0.0.1:" + std::to_string(port) + "/hook");
  open_outbox().start();
  std::vector<std::string> ids = send({event("acme"), event("acme"), event("acme")});
  ASSERT_TRUE(eventually([&] { return outbox_->stats().attempts >= 3; }));
  outbox_->stop();
  outbox_.reset();

  Receiver receiver(port);
  open_outbox().start();
  ASSERT_TRUE(receiver.wait_for(3, 10s));
  std::set<std::string> got;
  for (const testing::ReceivedRequest& r : receiver.requests()) {
    got.insert(r.id);
  }
  EXPECT_EQ(got, std::set<std::string>(ids.begin(), ids.end()));
  EXPECT_TRUE(eventually([&] { return total("delivered") == 3; }));
}

TEST_F(OutboxTest, RefusesPrivateTargetsUnlessAllowed) {
  Receiver receiver;
  std::vector<std::string> urls = {receiver.url(),
                                   "http://localhost:" + std::to_string(receiver.port()) + "/",
                                   "http://[::1]:9/",
                                   "http://10.1.2.3/hook",
                                   "http://172.16.0.1/",
                                   "http://192.168.1.1/",
                                   "http://169.254.169.254/latest/meta-data",
                                   "http://0.0.0.0/",
                                   "http://[fd00::1]/",
                                   "http://[::ffff:127.0.0.1]:9/",
                                   "https://127.0.0.1:9/"};
  std::vector<Event> events;
  for (std::size_t i = 0; i < urls.size(); ++i) {
    add_program("p" + std::to_string(i), urls[i]);
    events.push_back(event("p" + std::to_string(i)));
  }
  OutboxOptions options = fast();
  options.allow_private = false;
  open_outbox(options).start();
  send(events);

  ASSERT_TRUE(eventually([&] { return total("failed") == urls.size(); }));
  json::object all = list();
  for (const json::value& d : all.at("deliveries").as_array()) {
    EXPECT_EQ(num(d.at("attempt_count")), 1u) << json::serialize(d);
    EXPECT_EQ(d.at("attempts").as_array()[0].at("error"), "private address refused");
    EXPECT_EQ(d.at("failure"), "private address refused");
  }
  EXPECT_EQ(receiver.count(), 0u);
  EXPECT_EQ(outbox_->stats().given_up, urls.size());
}

TEST_F(OutboxTest, ListsNewestFirstFilteredAndPaged) {
  add_program("a", "http://127.0.0.1:9/a");
  add_program("b", "http://127.0.0.1:9/b");
  open_outbox();  // not started: everything stays pending
  std::vector<std::string> a_ids;
  for (int i = 0; i < 5; ++i) {
    a_ids.push_back(send({event("a")})[0]);
    std::this_thread::sleep_for(2ms);  // distinct creation times
  }
  send({event("b"), event("b")});

  json::object page1 = list("a", "", 1, 2);
  EXPECT_EQ(num(page1.at("total")), 5u);
  EXPECT_EQ(num(page1.at("page")), 1u);
  EXPECT_EQ(num(page1.at("per_page")), 2u);
  json::array rows = page1.at("deliveries").as_array();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(str(rows[0].at("id")), a_ids[4]);
  EXPECT_EQ(str(rows[1].at("id")), a_ids[3]);
  EXPECT_EQ(rows[0].at("program"), "a");
  EXPECT_EQ(rows[0].at("state"), "pending");
  EXPECT_THAT(str(rows[0].at("created_at")), HasSubstr("T"));
  EXPECT_TRUE(rows[0].at("next_attempt_at").is_string());

  json::object page3 = list("a", "", 3, 2);
  ASSERT_EQ(page3.at("deliveries").as_array().size(), 1u);
  EXPECT_EQ(str(page3.at("deliveries").as_array()[0].at("id")), a_ids[0]);
  EXPECT_EQ(total("pending"), 7u);
  EXPECT_EQ(total("delivered"), 0u);
  EXPECT_EQ(num(list("b").at("total")), 2u);
  EXPECT_EQ(outbox_->list("", "bogus", 1, 10).first, 400u);
  EXPECT_EQ(outbox_->stats().pending, 7u);
}

TEST_F(OutboxTest, RedeliverSendsADeliveredEventAgain) {
  Receiver receiver;
  add_program("acme", receiver.url());
  open_outbox().start();
  std::vector<std::string> ids = send({event("acme")});
  ASSERT_TRUE(eventually([&] { return total("delivered") == 1; }));

  auto [code, body] = outbox_->redeliver(ids[0]);
  EXPECT_EQ(code, 202u) << body;
  ASSERT_TRUE(receiver.wait_for(2, 10s));
  EXPECT_EQ(receiver.requests()[1].id, ids[0]);
  ASSERT_TRUE(eventually([&] { return num(delivery(ids[0]).at("attempt_count")) == 2; }));
  EXPECT_EQ(delivery(ids[0]).at("state"), "delivered");

  EXPECT_EQ(outbox_->redeliver("msg_unknown").first, 404u);
  EXPECT_EQ(outbox_->redeliver("").first, 404u);
}

TEST_F(OutboxTest, RedeliverRevivesAFailedDelivery) {
  Receiver receiver;
  add_program("acme", receiver.url());
  OutboxOptions options = fast();
  options.allow_private = false;
  open_outbox(options).start();
  std::vector<std::string> ids = send({event("acme")});
  ASSERT_TRUE(eventually([&] { return total("failed") == 1; }));
  outbox_->stop();
  outbox_.reset();

  open_outbox().start();  // now private targets are allowed
  EXPECT_EQ(outbox_->redeliver(ids[0]).first, 202u);
  ASSERT_TRUE(receiver.wait_for(1, 10s));
  ASSERT_TRUE(eventually([&] { return total("delivered") == 1; }));
  EXPECT_FALSE(delivery(ids[0]).contains("failure"));
}

TEST_F(OutboxTest, GivesUpAfterTheRetryWindow) {
  Receiver receiver(0, [](std::size_t) { return 503u; });
  add_program("acme", receiver.url());
  OutboxOptions options = fast();
  options.first_retry_ms = 50;
  options.give_up_after_ms = 400;
  open_outbox(options).start();
  std::vector<std::string> ids = send({event("acme")});

  ASSERT_TRUE(eventually([&] { return total("failed") == 1; }));
  json::object d = delivery(ids[0]);
  EXPECT_EQ(d.at("failure"), "given up");
  EXPECT_GE(d.at("attempts").as_array().size(), 3u);
  EXPECT_EQ(num(d.at("attempts").as_array()[0].at("status")), 503u);
  EXPECT_EQ(outbox_->stats().given_up, 1u);
  EXPECT_EQ(outbox_->stats().pending, 0u);
  std::size_t seen = receiver.count();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(receiver.count(), seen);  // no attempt after giving up
}

TEST_F(OutboxTest, TimesOutASilentReceiver) {
  // Listens but never accepts: connect succeeds through the backlog, the response never comes.
  asio::io_context ioc;
  asio::ip::tcp::acceptor silent(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  add_program("acme", "http://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/");
  OutboxOptions options = fast();
  options.timeout_ms = 300;
  open_outbox(options).start();
  std::vector<std::string> ids = send({event("acme")});

  ASSERT_TRUE(eventually([&] { return outbox_->stats().failed_attempts >= 1; }));
  json::object d = delivery(ids[0]);
  EXPECT_EQ(d.at("state"), "pending");
  EXPECT_EQ(d.at("attempts").as_array()[0].at("error"), "read: timeout");
  EXPECT_GE(num(d.at("attempts").as_array()[0].at("duration_ms")), 250u);
}

TEST_F(OutboxTest, StopAbandonsAttemptsInFlightAndTheNextStartRetriesThem) {
  std::uint16_t port = 0;
  {
    asio::io_context ioc;
    asio::ip::tcp::acceptor silent(ioc, {asio::ip::make_address("127.0.0.1"), 0});
    port = silent.local_endpoint().port();
    add_program("acme", "http://127.0.0.1:" + std::to_string(port) + "/hook");
    OutboxOptions options = fast();
    options.timeout_ms = 30'000;
    open_outbox(options).start();
    send({event("acme"), event("acme")});
    std::this_thread::sleep_for(200ms);  // both attempts now wait for a response

    auto started = std::chrono::steady_clock::now();
    outbox_->stop();
    EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
    EXPECT_EQ(outbox_->stats().attempts, 0u);
    EXPECT_EQ(outbox_->stats().pending, 2u);
  }

  Receiver receiver(port);
  outbox_->start();  // the same outbox again
  ASSERT_TRUE(receiver.wait_for(2, 10s));
  EXPECT_TRUE(eventually([&] { return total("delivered") == 2; }));
}

TEST_F(OutboxTest, StageDoesNotWaitForADeadReceiver) {
  asio::io_context ioc;
  asio::ip::tcp::acceptor silent(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  add_program("acme", "http://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/");
  OutboxOptions options = fast();
  options.max_in_flight = 2;
  open_outbox(options).start();
  send({event("acme"), event("acme"), event("acme")});  // fills every slot with a stuck attempt

  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) {
    send({event("acme")});
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
}

TEST_F(OutboxTest, HttpsToAPlainHttpReceiverFailsTheHandshakeAndRetries) {
  Receiver receiver;
  add_program("acme", receiver.url("https"));
  open_outbox().start();
  std::vector<std::string> ids = send({event("acme")});

  ASSERT_TRUE(eventually([&] { return outbox_->stats().failed_attempts >= 2; }));
  json::object d = delivery(ids[0]);
  EXPECT_EQ(d.at("state"), "pending");
  for (const json::value& a : d.at("attempts").as_array()) {
    EXPECT_THAT(str(a.at("error")), StartsWith("tls handshake: "));
  }
  EXPECT_EQ(receiver.count(), 0u);
}

// A TLS server with a fresh self-signed certificate, which verification must reject.
class SelfSignedServer {
 public:
  SelfSignedServer() : ctx_(asio::ssl::context::tls_server), acceptor_(ioc_) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    SSL_CTX_use_certificate(ctx_.native_handle(), cert);
    SSL_CTX_use_PrivateKey(ctx_.native_handle(), key);
    X509_free(cert);
    EVP_PKEY_free(key);

    asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(endpoint.protocol());
    acceptor_.bind(endpoint);
    acceptor_.listen();
    accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~SelfSignedServer() {
    ioc_.stop();
    thread_.join();
  }

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, asio::ip::tcp::socket s) {
      if (ec) {
        return;
      }
      auto stream = std::make_shared<asio::ssl::stream<asio::ip::tcp::socket>>(std::move(s), ctx_);
      stream->async_handshake(asio::ssl::stream_base::server,
                              [stream](boost::system::error_code) {});
      accept();
    });
  }

  asio::io_context ioc_;
  asio::ssl::context ctx_;
  asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

TEST_F(OutboxTest, HttpsRejectsAnUntrustedCertificate) {
  SelfSignedServer server;
  add_program("acme", "https://127.0.0.1:" + std::to_string(server.port()) + "/hook");
  open_outbox().start();
  std::vector<std::string> ids = send({event("acme")});

  ASSERT_TRUE(eventually([&] { return outbox_->stats().failed_attempts >= 1; }));
  json::object d = delivery(ids[0]);
  EXPECT_EQ(d.at("state"), "pending");
  EXPECT_THAT(str(d.at("attempts").as_array()[0].at("error")),
              HasSubstr("certificate verify failed"));
}

TEST_F(OutboxTest, DeliversTwoThousandEventsToALoopbackReceiver) {
  constexpr std::size_t kEvents = 2'000;
  Receiver receiver;
  add_program("acme", receiver.url());
  open_outbox().start();
  std::vector<Event> events(kEvents, event("acme"));

  auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(outbox_->emit(events));
  ASSERT_TRUE(eventually([&] { return outbox_->stats().delivered == kEvents; }, 60s));
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("[ rate     ] %zu deliveries in %.3f s: %.0f per second (max_in_flight 16)\n",
              kEvents, seconds, kEvents / seconds);
  EXPECT_EQ(receiver.count(), kEvents);
  RecordProperty("deliveries_per_second", static_cast<int>(kEvents / seconds));
}

}  // namespace
}  // namespace earnd::webhooks
