// GET|HEAD /r/{code} over real HTTP: the 302 and its headers, as API.md states them.

#include <string>

#include <gtest/gtest.h>

#include "server_fixture.h"

namespace earnd::integration {
namespace {

class RedirectTest : public EarndTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(start_server());
    create_program();
    ASSERT_FALSE(enrol("u_17", "ana").empty());
  }

  // The Set-Cookie a 302 for click id must carry.
  static std::string expected_cookie(const std::string& id) {
    return "earnd_cid=" + id + "; Max-Age=" + std::to_string(kCookieDays * 86400) +
           "; Path=/; HttpOnly; SameSite=Lax";
  }
};

TEST_F(RedirectTest, LocationKeepsDestinationAndAddsReferralParameters) {
  HttpResponse r = visit("/r/ana?utm_source=mail&utm_medium=email");

  ASSERT_EQ(r.status, 302) << r.error << r.body;
  ASSERT_EQ(r.header_count("Location"), 1u);
  std::string location = r.header("Location").value_or("");
  std::string id = click_id_of(r);
  EXPECT_TRUE(looks_like_click_id(id)) << location;
  EXPECT_EQ(location,
            "https://shop.example.com/welcome?src=ref&utm_source=mail&utm_medium=email"
            "&ref=ana&earnd_cid=" +
                id + "#top");
  EXPECT_EQ(r.body, "");
}

TEST_F(RedirectTest, SetsClickCookieAndForbidsCaching) {
  HttpResponse r = visit("/r/ana");

  ASSERT_EQ(r.status, 302) << r.error << r.body;
  std::string id = click_id_of(r);
  ASSERT_TRUE(looks_like_click_id(id)) << r.header("Location").value_or("");
  ASSERT_EQ(r.header_count("Set-Cookie"), 1u);
  EXPECT_EQ(r.header("Set-Cookie").value_or(""), expected_cookie(id));
  EXPECT_EQ(r.header("Cache-Control").value_or(""), "no-store");
  EXPECT_EQ(r.header("Content-Length").value_or(""), "0");
}

TEST_F(RedirectTest, GivesEveryClickItsOwnId) {
  std::string first = click_id_of(visit("/r/ana"));
  std::string second = click_id_of(visit("/r/ana"));

  EXPECT_TRUE(looks_like_click_id(first));
  EXPECT_TRUE(looks_like_click_id(second));
  EXPECT_NE(first, second);
}

TEST_F(RedirectTest, MatchesCodeCaseInsensitively) {
  for (std::string_view target : {"/r/ANA", "/r/AnA?utm_source=x"}) {
    HttpResponse r = visit(target);
    ASSERT_EQ(r.status, 302) << target << ": " << r.error << r.body;
    std::string location = r.header("Location").value_or("");
    // The code in the Location is the link's own spelling, not the visitor's.
    EXPECT_EQ(query_param(location, "ref"), "ana") << location;
    EXPECT_TRUE(looks_like_click_id(click_id_of(r))) << location;
  }
}

TEST_F(RedirectTest, HeadAnswersSameHeadersWithoutBody) {
  HttpConnection c(public_endpoint());
  ASSERT_TRUE(c.connected()) << c.error();
  HttpResponse head =
      c.request("HEAD", "/r/ana?utm_source=mail", {{"User-Agent", std::string(kBrowserUa)}});
  ASSERT_EQ(head.status, 302) << head.error;
  // A GET on the same connection reads cleanly only if the HEAD answer held no body bytes.
  HttpResponse get =
      c.request("GET", "/r/ana?utm_source=mail", {{"User-Agent", std::string(kBrowserUa)}});
  ASSERT_EQ(get.status, 302) << get.error;

  std::string head_id = click_id_of(head);
  ASSERT_TRUE(looks_like_click_id(head_id));
  EXPECT_EQ(head.body, "");
  EXPECT_EQ(head.header("Set-Cookie").value_or(""), expected_cookie(head_id));
  EXPECT_EQ(head.header("Cache-Control"), get.header("Cache-Control"));
  std::string get_location = get.header("Location").value_or("");
  std::string head_location = head.header("Location").value_or("");
  EXPECT_EQ(head_location.replace(head_location.find(head_id), head_id.size(), click_id_of(get)),
            get_location);
  ASSERT_EQ(head.headers.size(), get.headers.size());
  for (std::size_t i = 0; i < head.headers.size(); ++i) {
    EXPECT_EQ(head.headers[i].first, get.headers[i].first);
  }
}

TEST_F(RedirectTest, UnknownCodeAnswersNotFoundPage) {
  for (std::string_view target : {"/r/nobody", "/r/x", "/r/has%20space"}) {
    HttpResponse r = visit(target);
    EXPECT_EQ(r.status, 404) << target << ": " << r.error;
    EXPECT_TRUE(r.header("Content-Type").value_or("").starts_with("text/html")) << target;
    EXPECT_NE(r.body.find("<title>"), std::string::npos) << r.body;
    EXPECT_FALSE(r.header("Location").has_value()) << target;
    EXPECT_FALSE(r.header("Set-Cookie").has_value()) << target;
  }
}

TEST_F(RedirectTest, DoesNotForwardIncomingReferralParameters) {
  HttpResponse r = visit("/r/ana?ref=evil&earnd_cid=x&utm_source=mail");

  ASSERT_EQ(r.status, 302) << r.error << r.body;
  std::string location = r.header("Location").value_or("");
  EXPECT_EQ(query_param_count(location, "ref"), 1) << location;
  EXPECT_EQ(query_param_count(location, "earnd_cid"), 1) << location;
  EXPECT_EQ(query_param(location, "ref"), "ana");
  EXPECT_TRUE(looks_like_click_id(click_id_of(r))) << location;
  EXPECT_EQ(query_param(location, "utm_source"), "mail");
  EXPECT_EQ(location.find("evil"), std::string::npos) << location;
  EXPECT_EQ(r.header("Set-Cookie").value_or(""), expected_cookie(click_id_of(r)));
}

}  // namespace
}  // namespace earnd::integration
