#include "earnd/metrics/metrics.h"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace earnd::metrics {
namespace {

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// The value of the series that starts a line with `series `, or -1 when there is none.
double value_of(const std::string& text, const std::string& series) {
  std::string start = series + " ";
  std::size_t at = text.rfind("\n" + start);
  if (text.starts_with(start)) {
    at = 0;
  } else if (at == std::string::npos) {
    return -1;
  } else {
    at += 1;
  }
  return std::stod(text.substr(at + start.size()));
}

class MetricsTest : public ::testing::Test {
 protected:
  Metrics metrics_;
};

TEST_F(MetricsTest, RendersRequestCounterAfterCountRequest) {
  metrics_.count_request(Listener::kPublic, Route::kRedirect, 302);
  metrics_.count_request(Listener::kPublic, Route::kRedirect, 302);
  metrics_.count_request(Listener::kAdmin, Route::kMetrics, 200);

  std::string out = metrics_.render();

  EXPECT_TRUE(contains(out, "# TYPE earnd_http_requests_total counter\n"));
  EXPECT_TRUE(contains(
      out, "earnd_http_requests_total{listener=\"public\",route=\"redirect\",status=\"302\"} 2\n"))
      << out;
  EXPECT_TRUE(contains(
      out, "earnd_http_requests_total{listener=\"admin\",route=\"metrics\",status=\"200\"} 1\n"));
}

TEST_F(MetricsTest, OmitsUnusedRequestSeries) {
  std::string out = metrics_.render();

  EXPECT_FALSE(contains(out, "earnd_http_requests_total{"));
}

TEST_F(MetricsTest, CountsUnlistedStatusAsOther) {
  metrics_.count_request(Listener::kPublic, Route::kConversion, 418);

  std::string out = metrics_.render();

  EXPECT_TRUE(contains(
      out,
      "earnd_http_requests_total{listener=\"public\",route=\"conversion\",status=\"other\"} 1\n"));
}

TEST_F(MetricsTest, RendersClickCountersByReason) {
  metrics_.set_reason_names({"human", "bot_ua"});
  metrics_.clicks_by_reason[1] = 3;
  metrics_.clicks_stored = 12;
  metrics_.clicks_dropped_queue_full = 4;

  std::string out = metrics_.render();

  EXPECT_TRUE(contains(out, "earnd_clicks_total{reason=\"human\"} 0\n"));
  EXPECT_TRUE(contains(out, "earnd_clicks_total{reason=\"bot_ua\"} 3\n"));
  EXPECT_TRUE(contains(out, "\nearnd_clicks_stored_total 12\n"));
  EXPECT_TRUE(contains(out, "earnd_clicks_dropped_total{cause=\"queue_full\"} 4\n"));
}

TEST_F(MetricsTest, RendersGaugesReadAtRenderTime) {
  double depth = 42;
  metrics_.add_gauge("earnd_ingest_queue_depth", "Clicks waiting for the writer.",
                     [&depth] { return depth; });
  metrics_.connections_open = 5;

  std::string first = metrics_.render();
  depth = 7;
  std::string second = metrics_.render();

  EXPECT_TRUE(contains(first,
                       "# HELP earnd_ingest_queue_depth Clicks waiting for the writer.\n"
                       "# TYPE earnd_ingest_queue_depth gauge\n"
                       "earnd_ingest_queue_depth 42\n"))
      << first;
  EXPECT_TRUE(contains(second, "\nearnd_ingest_queue_depth 7\n"));
  EXPECT_TRUE(contains(first, "# TYPE earnd_connections_open gauge\nearnd_connections_open 5\n"));
}

TEST_F(MetricsTest, RendersTheThreeHistograms) {
  metrics_.batch_size.observe(100);

  std::string out = metrics_.render();

  EXPECT_TRUE(contains(out, "# TYPE earnd_redirect_seconds histogram\n"));
  EXPECT_TRUE(contains(out, "# TYPE earnd_ingest_commit_seconds histogram\n"));
  EXPECT_TRUE(contains(out, "earnd_ingest_batch_size_bucket{le=\"128\"} 1\n")) << out;
  EXPECT_TRUE(contains(out, "earnd_ingest_batch_size_bucket{le=\"+Inf\"} 1\n"));
  EXPECT_TRUE(contains(out, "earnd_ingest_batch_size_count 1\n"));
}

class HistogramTest : public ::testing::Test {
 protected:
  std::string render(const std::string& labels = "") const {
    std::string out;
    h_.render("h", labels, out);
    return out;
  }

  Histogram h_{{1, 2, 4}};
};

TEST_F(HistogramTest, BucketsAreCumulative) {
  for (double v : {1.5, 1.5, 3.0, 10.0}) {
    h_.observe(v);
  }

  std::string out = render();

  EXPECT_TRUE(contains(out, "h_bucket{le=\"2\"} 2\n")) << out;
  EXPECT_TRUE(contains(out, "h_bucket{le=\"4\"} 3\n")) << out;
  EXPECT_TRUE(contains(out, "h_bucket{le=\"+Inf\"} 4\n")) << out;
  EXPECT_TRUE(contains(out, "h_count 4\n")) << out;
  EXPECT_TRUE(contains(out, "h_sum 16\n")) << out;
}

// Prometheus counts an observation in every bucket whose bound is >= the value, including the
// lowest bucket for values below it.
TEST_F(HistogramTest, CountsEveryObservation) {
  for (double v : {0.5, 1.5, 3.0, 10.0, 0.1}) {
    h_.observe(v);
  }

  std::string out = render();

  EXPECT_TRUE(contains(out, "h_bucket{le=\"1\"} 2\n")) << out;
  EXPECT_TRUE(contains(out, "h_bucket{le=\"+Inf\"} 5\n")) << out;
  EXPECT_TRUE(contains(out, "h_count 5\n")) << out;
}

TEST_F(HistogramTest, BucketBoundsAreInclusive) {
  h_.observe(1.0);
  h_.observe(2.0);

  std::string out = render();

  EXPECT_TRUE(contains(out, "h_bucket{le=\"1\"} 1\n")) << out;
  EXPECT_TRUE(contains(out, "h_bucket{le=\"2\"} 2\n")) << out;
}

TEST_F(HistogramTest, SumKeepsSubMillisecondObservations) {
  Histogram seconds({0.001, 0.01});
  for (int i = 0; i < 10; ++i) {
    seconds.observe(0.0002);  // a 200 us redirect
  }

  std::string out;
  seconds.render("s", "", out);

  EXPECT_NEAR(value_of(out, "s_sum"), 0.002, 1e-9) << out;
}

TEST_F(HistogramTest, RendersLabelsOnEverySeries) {
  h_.observe(3.0);

  std::string out = render("route=\"redirect\"");

  EXPECT_TRUE(contains(out, "h_bucket{route=\"redirect\",le=\"+Inf\"} 1\n")) << out;
  EXPECT_TRUE(contains(out, "h_count{route=\"redirect\"} 1\n")) << out;
  EXPECT_TRUE(contains(out, "h_sum{route=\"redirect\"} 3\n")) << out;
}

}  // namespace
}  // namespace earnd::metrics
