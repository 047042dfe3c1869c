// GET /metrics on the admin listener: Prometheus text with the request, click and latency
// figures of what the test just did.

#include <optional>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "server_fixture.h"

namespace earnd::integration {
namespace {

class MetricsTest : public EarndTest {
 protected:
  static constexpr int kBotClicks = 7;
  static constexpr int kBrowserClicks = 5;

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(start_server());
    create_program();
    ASSERT_FALSE(enrol("u_17", "ana").empty());
  }

  void make_clicks() {
    for (int i = 0; i < kBotClicks; ++i) {
      ASSERT_EQ(visit("/r/ana", kGooglebotUa).status, 302) << i;
    }
    for (int i = 0; i < kBrowserClicks; ++i) {
      ASSERT_EQ(visit("/r/ana").status, 302) << i;
    }
    ASSERT_EQ(visit("/r/nobody").status, 404);
  }

  std::string scrape() {
    HttpResponse r = admin("GET", "/metrics");
    EXPECT_EQ(r.status, 200) << r.error << r.body;
    EXPECT_TRUE(r.header("Content-Type").value_or("").starts_with("text/plain"));
    return r.body;
  }

  // The value of the sample whose name and labels are exactly series, or nullopt.
  static std::optional<double> sample(const std::string& text, std::string_view series) {
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.size() > series.size() && line.starts_with(series) && line[series.size()] == ' ') {
        return std::stod(line.substr(series.size() + 1));
      }
    }
    return std::nullopt;
  }
};

TEST_F(MetricsTest, CountsRequestsByListenerRouteAndStatus) {
  ASSERT_NO_FATAL_FAILURE(make_clicks());

  std::string text = scrape();

  EXPECT_NE(text.find("# TYPE earnd_http_requests_total counter"), std::string::npos);
  EXPECT_EQ(
      sample(text, R"(earnd_http_requests_total{listener="public",route="redirect",status="302"})"),
      kBotClicks + kBrowserClicks)
      << text;
  EXPECT_EQ(
      sample(text, R"(earnd_http_requests_total{listener="public",route="redirect",status="404"})"),
      1)
      << text;
}

TEST_F(MetricsTest, CountsClicksByReason) {
  ASSERT_NO_FATAL_FAILURE(make_clicks());

  std::string text = scrape();

  EXPECT_EQ(sample(text, R"(earnd_clicks_total{reason="bot_ua"})"), kBotClicks) << text;
  EXPECT_EQ(sample(text, R"(earnd_clicks_total{reason="human"})"), kBrowserClicks) << text;
  EXPECT_EQ(sample(text, R"(earnd_clicks_total{reason="head"})"), 0) << text;
  EXPECT_EQ(sample(text, "earnd_clicks_stored_total"), kBotClicks + kBrowserClicks) << text;
}

TEST_F(MetricsTest, ObservesEveryRedirectInLatencyHistogram) {
  ASSERT_NO_FATAL_FAILURE(make_clicks());

  std::string text = scrape();

  EXPECT_NE(text.find("# TYPE earnd_redirect_seconds histogram"), std::string::npos);
  EXPECT_NE(text.find("earnd_redirect_seconds_bucket{le="), std::string::npos) << text;
  EXPECT_EQ(sample(text, R"(earnd_redirect_seconds_bucket{le="+Inf"})"),
            kBotClicks + kBrowserClicks)
      << text;
  EXPECT_EQ(sample(text, "earnd_redirect_seconds_count"), kBotClicks + kBrowserClicks) << text;
}

}  // namespace
}  // namespace earnd::integration
