#include "earnbench/prometheus.h"

#include <gtest/gtest.h>

namespace earnbench {
namespace {

constexpr const char* kBefore = R"(# HELP earnd_http_requests_total HTTP requests answered.
# TYPE earnd_http_requests_total counter
earnd_http_requests_total{listener="public",route="redirect",status="302"} 100
earnd_http_requests_total{listener="public",route="redirect",status="404"} 5
earnd_http_requests_total{listener="admin",route="metrics",status="200"} 1
# TYPE earnd_ingest_batch_size histogram
earnd_ingest_batch_size_bucket{le="1"} 2
earnd_ingest_batch_size_bucket{le="+Inf"} 10
earnd_ingest_batch_size_sum 100
earnd_ingest_batch_size_count 10
earnd_clicks_stored_total 100
earnd_rocksdb_live_sst_bytes 1.5e+06
)";

constexpr const char* kAfter = R"(earnd_http_requests_total{listener="public",route="redirect",status="302"} 1100
earnd_http_requests_total{listener="public",route="redirect",status="404"} 5
earnd_ingest_batch_size_sum 1100
earnd_ingest_batch_size_count 30
earnd_clicks_stored_total 1100 1733250000000
)";

TEST(MetricsSnapshotTest, ReadsSeriesWithAndWithoutLabels) {
  auto m = MetricsSnapshot::parse(kBefore);
  EXPECT_EQ(m.value("earnd_clicks_stored_total"), 100);
  EXPECT_EQ(m.value("earnd_rocksdb_live_sst_bytes"), 1.5e6);
  EXPECT_EQ(m.value(R"(earnd_http_requests_total{listener="public",route="redirect",status="404"})"), 5);
  EXPECT_EQ(m.value(R"(earnd_ingest_batch_size_bucket{le="+Inf"})"), 10);
  EXPECT_FALSE(m.value("earnd_missing").has_value());
}

TEST(MetricsSnapshotTest, SumAddsEveryLabelSetOfOneMetricOnly) {
  auto m = MetricsSnapshot::parse(kBefore);
  EXPECT_EQ(m.sum("earnd_http_requests_total"), 106);
  EXPECT_EQ(m.sum("earnd_ingest_batch_size_sum"), 100);
  // The family name alone is not a series: its _bucket, _sum and _count do not add up into it.
  EXPECT_FALSE(m.sum("earnd_ingest_batch_size").has_value());
  EXPECT_FALSE(m.sum("earnd_http_requests").has_value());
}

TEST(MetricsSnapshotTest, IgnoresTimestampsCommentsAndBrokenLines) {
  auto m = MetricsSnapshot::parse(
      "# a comment\n\nbroken_line\nlabels_unclosed{a=\"b\" 3\nok_metric 7 1733250000000\r\n"
      "quoted{path=\"/r/a b}\",x=\"\\\"q\\\"\"} 4\ninf_metric +Inf\n");
  EXPECT_EQ(m.value("ok_metric"), 7);
  EXPECT_FALSE(m.value("broken_line").has_value());
  EXPECT_FALSE(m.sum("labels_unclosed").has_value());
  EXPECT_EQ(m.sum("quoted"), 4);
  EXPECT_EQ(m.value("inf_metric"), std::numeric_limits<double>::infinity());
}

TEST(MetricsSnapshotTest, DeltaSubtractsSnapshots) {
  auto before = MetricsSnapshot::parse(kBefore);
  auto after = MetricsSnapshot::parse(kAfter);
  EXPECT_EQ(delta(before, after, "earnd_clicks_stored_total"), 1000);
  EXPECT_EQ(delta(before, after, "earnd_ingest_batch_size_count"), 20);
  // The admin series vanished from `after`, so the labelled total is 1105 - 106.
  EXPECT_EQ(delta(before, after, "earnd_http_requests_total"), 999);
  EXPECT_FALSE(delta(before, after, "earnd_rocksdb_live_sst_bytes").has_value());
  EXPECT_FALSE(delta(before, MetricsSnapshot{}, "earnd_clicks_stored_total").has_value());
}

}  // namespace
}  // namespace earnbench
