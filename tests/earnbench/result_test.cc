#include "earnbench/result.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace earnbench {
namespace {

namespace json = boost::json;

constexpr const char* kBefore =
    "earnd_clicks_stored_total 1000\nearnd_clicks_dropped_total{cause=\"queue_full\"} 0\n"
    "earnd_ingest_bytes_written_total 40000\nearnd_ingest_batch_size_sum 1000\n"
    "earnd_ingest_batch_size_count 100\nearnd_ingest_commit_seconds_sum 0.1\n"
    "earnd_ingest_commit_seconds_count 100\n";
constexpr const char* kAfter =
    "earnd_clicks_stored_total 21000\nearnd_clicks_dropped_total{cause=\"queue_full\"} 3\n"
    "earnd_ingest_bytes_written_total 840000\nearnd_ingest_batch_size_sum 21000\n"
    "earnd_ingest_batch_size_count 500\nearnd_ingest_commit_seconds_sum 0.5\n"
    "earnd_ingest_commit_seconds_count 500\n";

TEST(ResultTest, ServerFiguresComeFromMetricDeltas) {
  auto f = server_figures(MetricsSnapshot::parse(kBefore), MetricsSnapshot::parse(kAfter),
                          ProcUsage{.cpu_seconds = 1.0, .rss_bytes = 5e7},
                          ProcUsage{.cpu_seconds = 3.0, .rss_bytes = 6e7}, 4.0, 20'000);
  EXPECT_TRUE(f.skipped.empty());
  EXPECT_EQ(f.clicks_stored, 20'000);
  EXPECT_EQ(f.clicks_dropped, 3);
  EXPECT_DOUBLE_EQ(*f.bytes_written_per_click, 40.0);  // 800,000 B / 20,000 clicks.
  EXPECT_DOUBLE_EQ(*f.mean_batch_size, 50.0);          // 20,000 clicks / 400 batches.
  EXPECT_NEAR(*f.mean_commit_us, 1000.0, 1e-6);        // 0.4 s / 400 commits.
  EXPECT_DOUBLE_EQ(*f.cpu_seconds, 2.0);
  EXPECT_DOUBLE_EQ(*f.cpu_cores_used, 0.5);        // 2 s of CPU in 4 s.
  EXPECT_DOUBLE_EQ(*f.cpu_us_per_request, 100.0);  // 2 s / 20,000 requests.
  EXPECT_DOUBLE_EQ(*f.rss_bytes, 6e7);
  EXPECT_EQ(f.cpu_source, "/proc/<pid>/stat");
  EXPECT_FALSE(f.mean_redirect_us.has_value());
}

TEST(ResultTest, ProcessCpuCounterWinsOverProc) {
  auto before = MetricsSnapshot::parse("process_cpu_seconds_total 10\n");
  auto after = MetricsSnapshot::parse("process_cpu_seconds_total 11.5\n");
  auto f = server_figures(before, after, ProcUsage{.cpu_seconds = 0}, ProcUsage{.cpu_seconds = 9},
                          3.0, 1000);
  EXPECT_EQ(f.cpu_source, "process_cpu_seconds_total");
  EXPECT_DOUBLE_EQ(*f.cpu_cores_used, 0.5);
  EXPECT_DOUBLE_EQ(*f.cpu_us_per_request, 1500.0);
}

TEST(ResultTest, NoSourcesLeaveFiguresEmpty) {
  auto f = server_figures({}, {}, std::nullopt, std::nullopt, 3.0, 1000);
  EXPECT_FALSE(f.clicks_stored.has_value());
  EXPECT_FALSE(f.cpu_cores_used.has_value());
  EXPECT_NE(f.cpu_source.find("skipped"), std::string::npos);
}

RunResult sample_run() {
  RunResult r;
  r.scenario.url = "http://127.0.0.1:8080";
  r.elapsed_s = 2.0;
  r.requests = 10'000;
  r.redirects = 9'990;
  r.latency = {.p50 = 300, .p90 = 500, .p99 = 900, .p999 = 1500, .max = 4000, .mean = 320};
  r.errors.timeout = 2;
  r.errors.status[404] = 10;
  r.machine_cpus = 2;
  return r;
}

TEST(ResultTest, JsonCarriesTheContractKeys) {
  json::object o = to_json(sample_run());
  EXPECT_DOUBLE_EQ(o.at("throughput_rps").as_double(), 5000.0);
  EXPECT_EQ(o.at("requests").to_number<std::uint64_t>(), 10'000u);
  const json::object& lat = o.at("latency_us").as_object();
  EXPECT_EQ(lat.at("p50").to_number<int>(), 300);
  EXPECT_EQ(lat.at("p90").to_number<int>(), 500);
  EXPECT_EQ(lat.at("p99").to_number<int>(), 900);
  EXPECT_EQ(lat.at("p999").to_number<int>(), 1500);
  EXPECT_EQ(lat.at("max").to_number<int>(), 4000);
  const json::object& err = o.at("errors").as_object();
  EXPECT_EQ(err.at("total").to_number<int>(), 12);
  EXPECT_EQ(err.at("status").at("404").to_number<int>(), 10);
  EXPECT_EQ(o.at("scenario").at("mode").as_string(), "closed-loop");
  // Capacity counts the 302 answers only: 9,990 in 2 s.
  EXPECT_DOUBLE_EQ(o.at("capacity").at("rps_302").as_double(), 4995.0);
  EXPECT_DOUBLE_EQ(o.at("capacity").at("clicks_per_day").as_double(), 431'568'000.0);
  EXPECT_TRUE(o.at("server").is_object());
}

// Equal as JSON documents, where a number written short ("5000") equals the double it came from.
bool same_json(const json::value& a, const json::value& b) {
  if (a.is_number() && b.is_number()) {
    return a.to_number<double>() == b.to_number<double>();
  }
  if (a.kind() != b.kind()) {
    return false;
  }
  if (a.is_object()) {
    const json::object& x = a.as_object();
    const json::object& y = b.as_object();
    if (x.size() != y.size()) {
      return false;
    }
    for (const auto& [k, v] : x) {
      if (!y.contains(k) || !same_json(v, y.at(k))) {
        return false;
      }
    }
    return true;
  }
  if (a.is_array()) {
    const json::array& x = a.as_array();
    const json::array& y = b.as_array();
    if (x.size() != y.size()) {
      return false;
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!same_json(x[i], y[i])) {
        return false;
      }
    }
    return true;
  }
  return a == b;
}

TEST(ResultTest, PrettyJsonParsesBackAndWritesShortNumbers) {
  json::object o = to_json(sample_run());
  std::string text = pretty_json(o);
  EXPECT_TRUE(same_json(json::parse(text), json::value(o))) << text;
  EXPECT_NE(text.find("\"bot_share\": 0.02"), std::string::npos);
  EXPECT_NE(text.find("\"p99\": 900"), std::string::npos);
}

TEST(ResultTest, SummaryNamesFiguresAndErrors) {
  std::string s = summary_text(sample_run());
  EXPECT_NE(s.find("10,000 in 2.00 s = 5,000 req/s"), std::string::npos) << s;
  EXPECT_NE(s.find("p99.9 1500 us"), std::string::npos) << s;
  EXPECT_NE(s.find("timeout 2, status 404: 10"), std::string::npos) << s;
  EXPECT_NE(s.find("4,995 clicks/s sustained = 431,568,000 clicks/day"), std::string::npos) << s;
  EXPECT_NE(s.find("warning     12 click requests failed or were not answered 302"),
            std::string::npos)
      << s;
  EXPECT_EQ(s.find("did not keep up"), std::string::npos) << s;
}

// An open loop whose server fell behind says so; one that kept up does not.
TEST(ResultTest, SummaryWarnsWhenAnOpenLoopFellBehind) {
  RunResult r = sample_run();
  r.scenario.rate = 20'000;  // 5,000 answered per second
  std::string s = summary_text(r);
  EXPECT_NE(s.find("5,000 req/s answered of the 20,000 offered"), std::string::npos) << s;
  r.scenario.rate = 5'000;
  EXPECT_EQ(summary_text(r).find("did not keep up"), std::string::npos);
}

// Nothing answered 302 (a wrong code, a wrong port): no capacity to speak of.
TEST(ResultTest, CapacityOfARunWithoutRedirectsIsZero) {
  RunResult r = sample_run();
  r.redirects = 0;
  r.errors.status[404] = 10'000;
  json::object o = to_json(r);
  EXPECT_DOUBLE_EQ(o.at("capacity").at("clicks_per_day").as_double(), 0.0);
  EXPECT_DOUBLE_EQ(o.at("throughput_rps").as_double(), 5000.0);
}

TEST(ResultTest, GroupsDigitsByThousands) {
  EXPECT_EQ(group_digits(0), "0");
  EXPECT_EQ(group_digits(999), "999");
  EXPECT_EQ(group_digits(1000), "1,000");
  EXPECT_EQ(group_digits(1234567.4), "1,234,567");
}

}  // namespace
}  // namespace earnbench
