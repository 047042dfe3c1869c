// The writer's per-click storage work: ClickBatch::add (dictionary number, record, visitor entry,
// counter sum) for clicks spread over many links, and a whole batch written with
// Store::write_clicks (no sync: the fsync is the disk's, measured in docs/benchmarks.md).
// Reports ns, heap allocations and bytes handed to RocksDB per click.

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "../common/alloc_counter.h"
#include "earnd/common/click.h"
#include "earnd/store/store.h"

namespace {

using namespace earnd;

struct Scratch {
  explicit Scratch(bool pipelined = false) {
    dir = std::filesystem::temp_directory_path() /
          ("earnd-store-bench-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    store = store::Store::open({.data_dir = dir.string(), .pipelined_write = pipelined});
  }

  ~Scratch() {
    store.reset();
    std::filesystem::remove_all(dir);
  }

  std::filesystem::path dir;
  std::unique_ptr<store::Store> store;
};

// Clicks on `links` links (program, referrer and code as the server makes them), time ordered.
std::vector<ClickRecord> make_clicks(std::size_t n, std::size_t links) {
  std::vector<ClickRecord> out(n);
  std::uint64_t t = 1'780'000'000'000;
  for (std::size_t i = 0; i < n; ++i) {
    ClickRecord& c = out[i];
    c.ts_ms = t + i / 8;
    c.visitor_hash = 0x9e3779b97f4a7c15ULL * (i % 4099 + 1);
    c.id = make_click_id(c.ts_ms, static_cast<std::uint8_t>(c.visitor_hash % 64));
    std::size_t link = (i * 2654435761u) % links;
    c.program = "acme";
    c.referrer_id = "rf_" + std::to_string(100'000'000'000 + link);
    c.code = "c" + std::to_string(100'000 + link);
    c.referer_host = i % 3 ? "" : "news.example.org";
  }
  return out;
}

void BM_ClickBatch_Add(benchmark::State& state) {
  Scratch s;
  auto clicks = make_clicks(4096, static_cast<std::size_t>(state.range(0)));
  store::ClickBatch batch = s.store->make_click_batch();
  // Name every link once and store it, as a running server has.
  for (const auto& c : clicks) {
    batch.add(c);
  }
  (void)s.store->write_clicks(batch, false);
  batch.clear();
  std::uint64_t allocs = 0;
  std::size_t i = 0;
  for (auto _ : state) {
    std::uint64_t before = bench::thread_allocations();
    batch.add(clicks[i]);
    allocs += bench::thread_allocations() - before;
    if (++i == clicks.size()) {
      i = 0;
      state.PauseTiming();
      batch.clear();
      state.ResumeTiming();
    }
  }
  state.counters["allocs_per_click"] =
      benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
}

BENCHMARK(BM_ClickBatch_Add)->Arg(1)->Arg(1000)->Arg(50'000);

void BM_Store_WriteClicks(benchmark::State& state) {
  Scratch s;
  const auto batch_size = static_cast<std::size_t>(state.range(0));
  auto clicks = make_clicks(batch_size * 64, 1000);
  store::ClickBatch batch = s.store->make_click_batch();
  std::size_t next = 0;
  std::uint64_t bytes = 0;
  std::uint64_t n = 0;
  for (auto _ : state) {
    for (std::size_t k = 0; k < batch_size; ++k) {
      // Time keeps moving forward, as it does for a server: eight clicks per millisecond.
      ClickRecord c = clicks[next];
      c.ts_ms = 1'780'000'000'000 + n++ / 8;
      c.id = make_click_id(c.ts_ms, c.id.shard());
      batch.add(c);
      next = (next + 1) % clicks.size();
    }
    if (s.store->write_clicks(batch, false)) {
      state.SkipWithError("write failed");
      break;
    }
    bytes += batch.data_bytes();
    batch.clear();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch_size));
  state.counters["bytes_per_click"] =
      benchmark::Counter(static_cast<double>(bytes) / static_cast<double>(batch_size),
                         benchmark::Counter::kAvgIterations);
}

BENCHMARK(BM_Store_WriteClicks)->Arg(64)->Arg(512);

// Group durability's write: batches of 28 clicks (the batch size measured under wrk's 64
// connections), each synced, from one writer or from several at once; range(0) 1 turns on
// RocksDB's pipelined write. Items per second is what a 302 waiting for its batch sees. The
// fsync is the disk's, so the figure is this machine's, not the code's.
// One store per run, opened before its threads start and closed after they all finished (a
// store left to static destruction at exit outlives parts of RocksDB and crashes).
std::unique_ptr<Scratch> g_synced;

void OpenSynced(const benchmark::State& state) {
  g_synced = std::make_unique<Scratch>(state.range(0) != 0);
}

void CloseSynced(const benchmark::State&) {
  g_synced.reset();
}

void BM_Store_WriteClicksSynced(benchmark::State& state) {
  constexpr std::size_t kBatch = 28;
  auto clicks = make_clicks(kBatch * 64, 1000);
  std::size_t next = 0;
  std::uint64_t n = static_cast<std::uint64_t>(state.thread_index()) << 32;
  std::unique_ptr<store::ClickBatch> batch;
  for (auto _ : state) {
    if (!batch) {
      batch = std::make_unique<store::ClickBatch>(g_synced->store->make_click_batch());
    }
    for (std::size_t k = 0; k < kBatch; ++k) {
      ClickRecord c = clicks[next];
      c.ts_ms = 1'780'000'000'000 + (n++ & 0xffffffff) / 8;
      c.id = make_click_id(c.ts_ms, c.id.shard());
      batch->add(c);
      next = (next + 1) % clicks.size();
    }
    if (g_synced->store->write_clicks(*batch, true)) {
      state.SkipWithError("write failed");
      break;
    }
    batch->clear();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
}

BENCHMARK(BM_Store_WriteClicksSynced)
    ->Setup(OpenSynced)
    ->Teardown(CloseSynced)
    ->Arg(0)
    ->Arg(1)
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();

}  // namespace
