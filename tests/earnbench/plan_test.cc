#include "earnbench/plan.h"

#include <cmath>
#include <limits>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "earnbench/result.h"

namespace earnbench {
namespace {

MeasuredRun measured() {
  MeasuredRun run;
  run.source = "run.json";
  run.mode = "closed-loop";
  run.throughput_rps = 20'000;
  run.cpu_cores_used = 2.0;  // 10,000 req/s per core.
  run.bytes_per_click = 40;
  run.rss_bytes = 100e6;
  run.machine_cpus = 2;
  return run;
}

TEST(PlanTest, ScalesTheMeasuredRun) {
  PlanRequest req{.clicks_per_day = 864'000'000, .peak_factor = 3, .retention_days = 30};
  Plan p = make_plan(req, measured());
  EXPECT_DOUBLE_EQ(p.mean_rps, 10'000);
  EXPECT_DOUBLE_EQ(p.peak_rps, 30'000);
  EXPECT_DOUBLE_EQ(*p.rps_per_core, 10'000);
  EXPECT_EQ(*p.cores, 5u);  // 30,000 / (10,000 x 0.7) = 4.3, rounded up.
  EXPECT_DOUBLE_EQ(p.stored_clicks, 25'920'000'000);
  EXPECT_DOUBLE_EQ(*p.disk_bytes, 25'920'000'000 * 40 * 1.5);
  EXPECT_DOUBLE_EQ(*p.memory_bytes, 150e6);
}

TEST(PlanTest, SmallLoadsStillGetOneCore) {
  PlanRequest req{.clicks_per_day = 8'640'000, .peak_factor = 2, .retention_days = 365};
  Plan p = make_plan(req, measured());
  EXPECT_DOUBLE_EQ(p.peak_rps, 200);
  EXPECT_EQ(*p.cores, 1u);
  EXPECT_DOUBLE_EQ(*p.disk_bytes, 8'640'000.0 * 365 * 40 * 1.5);
}

TEST(PlanTest, MissingFiguresLeavePlanLinesEmpty) {
  MeasuredRun run = measured();
  run.cpu_cores_used.reset();
  run.rss_bytes.reset();
  run.bytes_per_click.reset();
  Plan p = make_plan({.clicks_per_day = 1e6, .peak_factor = 3, .retention_days = 30}, run);
  EXPECT_FALSE(p.cores.has_value());
  EXPECT_FALSE(p.memory_bytes.has_value());
  EXPECT_FALSE(p.disk_bytes.has_value());
  std::string text =
      plan_text({.clicks_per_day = 1e6, .peak_factor = 3, .retention_days = 30}, run, p);
  EXPECT_NE(text.find("cores        n/a"), std::string::npos) << text;
}

TEST(PlanTest, ReadsTheResultFileOfARun) {
  RunResult r;
  r.elapsed_s = 5;
  r.requests = 100'000;
  r.redirects = 100'000;
  r.latency.p99 = 800;
  r.server.cpu_cores_used = 1.25;
  r.server.bytes_written_per_click = 38.5;
  r.server.rss_bytes = 7e7;
  r.machine_cpus = 2;
  MeasuredRun run = measured_run_from_json(boost::json::parse(pretty_json(to_json(r))), "r.json");
  EXPECT_EQ(run.source, "r.json");
  EXPECT_EQ(run.mode, "closed-loop");
  EXPECT_DOUBLE_EQ(run.throughput_rps, 20'000);
  EXPECT_DOUBLE_EQ(*run.cpu_cores_used, 1.25);
  EXPECT_DOUBLE_EQ(*run.bytes_per_click, 38.5);
  EXPECT_DOUBLE_EQ(*run.rss_bytes, 7e7);
  EXPECT_DOUBLE_EQ(*run.p99_us, 800);
  EXPECT_EQ(run.machine_cpus, 2u);
}

// The plan scales from the 302 answers, not from refusals counted as answers.
TEST(PlanTest, ScalesFromTheRedirectRate) {
  RunResult r;
  r.elapsed_s = 5;
  r.requests = 100'000;
  r.redirects = 50'000;
  MeasuredRun run = measured_run_from_json(boost::json::parse(pretty_json(to_json(r))), "r.json");
  EXPECT_DOUBLE_EQ(run.throughput_rps, 10'000);
  r.redirects = 0;
  EXPECT_THROW(measured_run_from_json(boost::json::parse(pretty_json(to_json(r))), "r.json"),
               std::runtime_error);
}

TEST(PlanTest, RefusesFiguresThatCannotBeMeasurements) {
  RunResult r;
  r.elapsed_s = 5;
  r.requests = r.redirects = 100'000;
  r.server.rss_bytes = -7e7;
  EXPECT_THROW(measured_run_from_json(boost::json::parse(pretty_json(to_json(r))), "r.json"),
               std::runtime_error);
}

TEST(PlanTest, RefusesRequestsOutOfRange) {
  PlanRequest ok{.clicks_per_day = 10'000'000, .peak_factor = 5, .retention_days = 365};
  EXPECT_FALSE(invalid_plan_request(ok).has_value());
  auto refused = [&](auto change) {
    PlanRequest r = ok;
    change(r);
    return invalid_plan_request(r).has_value();
  };
  EXPECT_TRUE(refused([](PlanRequest& r) { r.clicks_per_day = -1; }));
  EXPECT_TRUE(
      refused([](PlanRequest& r) { r.clicks_per_day = std::numeric_limits<double>::infinity(); }));
  EXPECT_TRUE(refused([](PlanRequest& r) { r.peak_factor = -5; }));
  EXPECT_TRUE(refused([](PlanRequest& r) { r.peak_factor = std::nan(""); }));
  EXPECT_TRUE(refused([](PlanRequest& r) { r.retention_days = -1; }));
  EXPECT_TRUE(refused([](PlanRequest& r) { r.target_utilization = 0; }));
  EXPECT_TRUE(refused([](PlanRequest& r) { r.target_utilization = 2; }));
  EXPECT_TRUE(refused([](PlanRequest& r) { r.disk_headroom = -1; }));
  EXPECT_TRUE(refused([](PlanRequest& r) { r.memory_headroom = -2; }));
  EXPECT_TRUE(refused([](PlanRequest& r) { r.disk_bytes_per_click = 0; }));
  EXPECT_TRUE(refused([](PlanRequest& r) { r.disk_bytes_per_click = std::nan(""); }));
  EXPECT_FALSE(refused([](PlanRequest& r) { r.retention_days = 0; }));
}

TEST(PlanTest, RefusesADocumentThatIsNotARun) {
  EXPECT_THROW(measured_run_from_json(boost::json::parse(R"({"p50": 1})"), "x.json"),
               std::runtime_error);
  EXPECT_THROW(measured_run_from_json(boost::json::parse("[1]"), "x.json"), std::runtime_error);
}

TEST(PlanTest, TextSaysWhereItCameFromAndWhatWasAssumed) {
  PlanRequest req{.clicks_per_day = 10'000'000, .peak_factor = 3, .retention_days = 365};
  MeasuredRun run = measured();
  std::string text = plan_text(req, run, make_plan(req, run));
  EXPECT_NE(text.find("measured run in run.json on this machine"), std::string::npos) << text;
  EXPECT_NE(text.find("Assumed:"), std::string::npos);
  EXPECT_NE(text.find("10,000 req/s per core"), std::string::npos) << text;
  EXPECT_NE(text.find("219.0 GB"), std::string::npos) << text;  // 3.65e9 x 40 B x 1.5.
  EXPECT_EQ(human_bytes(1.5e11), "150.0 GB");
  EXPECT_NE(text.find("before compression"), std::string::npos) << text;
}

// A bytes-per-click figure measured on disk replaces the run's pre-compression one.
TEST(PlanTest, DiskUsesTheGivenOnDiskBytesPerClick) {
  PlanRequest req{.clicks_per_day = 10'000'000, .peak_factor = 3, .retention_days = 365};
  req.disk_bytes_per_click = 50;
  MeasuredRun run = measured();
  Plan plan = make_plan(req, run);
  ASSERT_TRUE(plan.disk_bytes.has_value());
  EXPECT_DOUBLE_EQ(*plan.disk_bytes, 3.65e9 * 50 * 1.5);
  std::string text = plan_text(req, run, plan);
  EXPECT_NE(text.find("273.8 GB"), std::string::npos) << text;
  EXPECT_NE(text.find("on disk after compaction, as given"), std::string::npos) << text;
}

}  // namespace
}  // namespace earnbench
