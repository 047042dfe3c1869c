// The per-click CPU work of the redirect path, without sockets: classify the user agent, hash
// the visitor, make the click id, build the Location and the 302's bytes, then encode the click
// as the writer does. Reports ns and heap allocations per click.

#include <filesystem>

#include <benchmark/benchmark.h>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "../common/alloc_counter.h"
#include "earnd/attribution/conversions.h"
#include "earnd/common/click.h"
#include "earnd/ingest/bot_classifier.h"
#include "earnd/ingest/pipeline.h"
#include "earnd/ingest/sink.h"
#include "earnd/links/catalog.h"
#include "earnd/metrics/metrics.h"
#include "earnd/rewards/ledger.h"
#include "earnd/store/store.h"
#include "redirect.h"

namespace {

namespace bhttp = boost::beast::http;
using namespace earnd;

// One program and one link in a temporary store, and everything plan_redirect needs.
struct World {
  World() {
    dir = std::filesystem::temp_directory_path() / ("earnd-bench-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    store = store::Store::open({.data_dir = dir.string()});
    catalog = std::make_unique<links::Catalog>(*store, "http://127.0.0.1:8080");
    auto p = catalog->create_program(boost::json::parse(
        R"({"id":"acme","name":"Acme","currency":"USD",
            "destination":"https://shop.example.com/welcome?src=ref#top",
            "allowed_hosts":["shop.example.com"]})"));
    auto r = catalog->create_referrer("acme", boost::json::parse(
        R"({"external_id":"u_17","name":"Ana","code":"ana"})"));
    if (p.status != 201 || r.status != 201) {
      std::abort();
    }
    cfg.server.admin_key = "bench-admin-key-0123456789";
    sink = std::make_unique<ingest::StoreSink>(*store);
    pipeline = std::make_unique<ingest::Pipeline>(ingest::PipelineOptions{}, *sink, metrics, 1);
    bots = ingest::BotClassifier::from_embedded();
    ledger = std::make_unique<rewards::Ledger>(*store, *catalog);
    conversions = std::make_unique<attribution::ConversionService>(*store, *catalog, *ledger,
                                                                   nullptr,
                                                                   attribution::ConversionOptions{});
    services = std::make_unique<http::Services>(http::Services{.config = cfg,
                                                               .catalog = *catalog,
                                                               .store = *store,
                                                               .pipeline = *pipeline,
                                                               .bots = *bots,
                                                               .metrics = metrics,
                                                               .conversions = *conversions,
                                                               .ledger = *ledger,
                                                               .outbox = nullptr,
                                                               .visitor_secret = "bench-secret"});
  }

  ~World() {
    conversions.reset();
    ledger.reset();
    pipeline.reset();
    catalog.reset();
    store.reset();
    std::filesystem::remove_all(dir);
  }

  std::filesystem::path dir;
  config::Config cfg;
  metrics::Metrics metrics;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<links::Catalog> catalog;
  std::unique_ptr<ingest::StoreSink> sink;
  std::unique_ptr<ingest::Pipeline> pipeline;
  std::unique_ptr<ingest::BotClassifier> bots;
  std::unique_ptr<rewards::Ledger> ledger;
  std::unique_ptr<attribution::ConversionService> conversions;
  std::unique_ptr<http::Services> services;
};

http::Request make_request() {
  http::Request req(bhttp::verb::get, "/r/ANA?utm_source=newsletter&utm_medium=email", 11);
  req.set(bhttp::field::host, "go.example.com");
  req.set(bhttp::field::user_agent,
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36");
  req.set(bhttp::field::referer, "https://blog.example.org/post/42");
  return req;
}

void BM_Redirect_PlanClick(benchmark::State& state) {
  World w;
  http::TrustedProxies proxies({});
  KeyedHasher hasher("bench-secret");
  http::RedirectEnv env{*w.services, hasher, proxies};
  links::SnapshotReader reader(*w.catalog);
  http::RedirectScratch scratch;
  auto req = make_request();
  auto peer = boost::asio::ip::make_address("203.0.113.7");
  std::string encoded;
  std::uint64_t allocs = 0;
  for (auto _ : state) {
    std::uint64_t before = bench::thread_allocations();
    http::RedirectInput in{.request = req, .peer = peer, .now_ms = 1'780'000'000'000};
    auto plan = http::plan_redirect(env, reader.get(), in, scratch);
    encoded.clear();
    encode_click(plan.click.record, encoded);
    benchmark::DoNotOptimize(scratch.response.data());
    benchmark::DoNotOptimize(encoded.data());
    allocs += bench::thread_allocations() - before;
  }
  state.counters["allocs_per_click"] =
      benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_Redirect_PlanClick);

void BM_Redirect_ClickCodec(benchmark::State& state) {
  ClickRecord c;
  c.id = make_click_id(1'780'000'000'000, 7);
  c.ts_ms = 1'780'000'000'000;
  c.visitor_hash = 0x1234567890abcdefULL;
  c.program = "acme";
  c.referrer_id = "rf_3igag0tjt1r8";
  c.code = "ana";
  c.referer_host = "blog.example.org";
  std::string out;
  std::uint64_t allocs = 0;
  for (auto _ : state) {
    std::uint64_t before = bench::thread_allocations();
    out.clear();
    encode_click(c, out);
    auto back = decode_click(c.id, out);
    benchmark::DoNotOptimize(back);
    allocs += bench::thread_allocations() - before;
  }
  state.counters["allocs_per_click"] =
      benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_Redirect_ClickCodec);

}  // namespace
