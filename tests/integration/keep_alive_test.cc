// Connection reuse on the public listener: keep-alive, HTTP/1.0 rules and pipelining.

#include <set>
#include <string>

#include <gtest/gtest.h>

#include "server_fixture.h"

namespace earnd::integration {
namespace {

class KeepAliveTest : public EarndTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(start_server());
    create_program();
    for (std::string_view code : {"ana", "bob", "cyd"}) {
      ASSERT_FALSE(enrol(std::string("u_") + std::string(code), code).empty());
    }
    connection_ = std::make_unique<HttpConnection>(public_endpoint());
    ASSERT_TRUE(connection_->connected()) << connection_->error();
  }

  static std::string redirect_request(std::string_view code,
                                      std::string_view version = "HTTP/1.1",
                                      Headers extra = {}) {
    extra.emplace_back("User-Agent", std::string(kBrowserUa));
    return make_request("GET", "/r/" + std::string(code), extra, {}, version);
  }

  // The referral code a 302 sends the visitor on with.
  static std::string ref_of(const HttpResponse& r) {
    return query_param(r.header("Location").value_or(""), "ref");
  }

  HttpConnection& connection() { return *connection_; }

 private:
  std::unique_ptr<HttpConnection> connection_;
};

TEST_F(KeepAliveTest, AnswersManyRequestsOnOneConnection) {
  constexpr int kRequests = 25;
  std::set<std::string> ids;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(connection().send(redirect_request(i % 2 == 0 ? "ana" : "bob"))) << i;
    HttpResponse r = connection().read_response();
    ASSERT_EQ(r.status, 302) << "request " << i << ": " << r.error;
    EXPECT_EQ(ref_of(r), i % 2 == 0 ? "ana" : "bob");
    EXPECT_FALSE(r.header("Connection").has_value()) << i;
    ids.insert(click_id_of(r));
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kRequests));
  EXPECT_FALSE(connection().closed_by_peer(std::chrono::milliseconds(100)));
}

TEST_F(KeepAliveTest, ClosesHttp10ConnectionWithoutKeepAlive) {
  ASSERT_TRUE(connection().send(redirect_request("ana", "HTTP/1.0")));

  HttpResponse r = connection().read_response();

  ASSERT_EQ(r.status, 302) << r.error;
  EXPECT_EQ(ref_of(r), "ana");
  EXPECT_EQ(r.header("Connection").value_or(""), "close");
  EXPECT_TRUE(connection().closed_by_peer());
}

TEST_F(KeepAliveTest, KeepsHttp10ConnectionThatAsksForKeepAlive) {
  const Headers keep = {{"Connection", "keep-alive"}};
  ASSERT_TRUE(connection().send(redirect_request("ana", "HTTP/1.0", keep)));
  HttpResponse first = connection().read_response();
  ASSERT_EQ(first.status, 302) << first.error;
  EXPECT_EQ(first.header("Connection").value_or(""), "keep-alive");

  // The same socket serves a second request.
  ASSERT_TRUE(connection().send(redirect_request("bob", "HTTP/1.0", keep)));
  HttpResponse second = connection().read_response();

  ASSERT_EQ(second.status, 302) << second.error;
  EXPECT_EQ(ref_of(second), "bob");
  EXPECT_NE(click_id_of(first), click_id_of(second));
}

TEST_F(KeepAliveTest, ClosesHttp11ConnectionThatAsksForClose) {
  ASSERT_TRUE(connection().send(redirect_request("ana", "HTTP/1.1", {{"Connection", "close"}})));

  HttpResponse r = connection().read_response();

  ASSERT_EQ(r.status, 302) << r.error;
  EXPECT_EQ(r.header("Connection").value_or(""), "close");
  EXPECT_TRUE(connection().closed_by_peer());
}

TEST_F(KeepAliveTest, AnswersPipelinedRequestsInOrder) {
  ASSERT_TRUE(connection().send(redirect_request("cyd") + redirect_request("ana") +
                                redirect_request("bob")));

  std::vector<std::string> refs;
  for (int i = 0; i < 3; ++i) {
    HttpResponse r = connection().read_response();
    ASSERT_EQ(r.status, 302) << "response " << i << ": " << r.error;
    refs.push_back(ref_of(r));
  }
  EXPECT_EQ(refs, (std::vector<std::string>{"cyd", "ana", "bob"}));
}

TEST_F(KeepAliveTest, AnswersPipelinedMixOfRoutesInOrder) {
  ASSERT_TRUE(connection().send(redirect_request("bob") + make_request("GET", "/healthz") +
                                redirect_request("nobody") + redirect_request("ana")));

  HttpResponse bob = connection().read_response();
  HttpResponse health = connection().read_response();
  HttpResponse unknown = connection().read_response();
  HttpResponse ana = connection().read_response();

  EXPECT_EQ(bob.status, 302) << bob.error;
  EXPECT_EQ(ref_of(bob), "bob");
  EXPECT_EQ(health.status, 200) << health.error;
  EXPECT_EQ(health.body, R"({"status":"ok"})");
  EXPECT_EQ(unknown.status, 404) << unknown.error;
  EXPECT_EQ(ana.status, 302) << ana.error;
  EXPECT_EQ(ref_of(ana), "ana");
}

}  // namespace
}  // namespace earnd::integration
