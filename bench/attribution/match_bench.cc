// Matching one conversion to its visitor's clicks (attribution::match) against a store of
// 200,000 clicks of 20,000 visitors, compacted as a long-running store is: the winner alone (a
// batch query; the winner's time is confirmed by reading its clicks back), and with the
// candidates listed as an explanation does. Reports ns and heap allocations per match.

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "../common/alloc_counter.h"
#include "earnd/attribution/matcher.h"
#include "earnd/common/click.h"
#include "earnd/store/store.h"

namespace {

using namespace earnd;

constexpr std::uint64_t kT0 = 1'780'000'000'000;
constexpr std::uint64_t kVisitors = 20'000;
constexpr std::uint64_t kClicksPerVisitor = 10;
constexpr std::uint64_t kDayMs = 86'400'000;

std::uint64_t visitor_of(std::uint64_t v) {
  return 0x9e3779b97f4a7c15ULL * (v + 1);
}

// One store for every case: its clicks spread over 10 days, each visitor's an hour apart.
struct Fixture {
  Fixture() {
    dir = std::filesystem::temp_directory_path() /
          ("earnd-match-bench-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    store = store::Store::open({.data_dir = dir.string()});
    store::ClickBatch batch = store->make_click_batch();
    for (std::uint64_t k = 0; k < kClicksPerVisitor; ++k) {
      for (std::uint64_t v = 0; v < kVisitors; ++v) {
        ClickRecord c;
        c.ts_ms = kT0 + k * 3'600'000 + v;
        c.visitor_hash = visitor_of(v);
        c.id = make_click_id(c.ts_ms, static_cast<std::uint8_t>(c.visitor_hash % 64));
        c.program = "acme";
        // (fmt rather than "rf_" + std::to_string: GCC 12 warns a false -Wrestrict on that)
        c.referrer_id = fmt::format("rf_{}", v % 500);
        c.code = fmt::format("c{}", 100'000 + v % 500);
        batch.add(c);
        if (batch.count() == 4096) {
          (void)store->write_clicks(batch, false);
          batch.clear();
        }
      }
    }
    (void)store->write_clicks(batch, false);
    (void)store->compact_all();
  }

  ~Fixture() {
    store.reset();
    std::filesystem::remove_all(dir);
  }

  std::filesystem::path dir;
  std::unique_ptr<store::Store> store;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// range(0): need the winner's id; range(1): list the candidates.
void BM_Match(benchmark::State& state) {
  Fixture& f = fixture();
  const bool need_id = state.range(0) != 0;
  const bool list = state.range(1) != 0;
  std::vector<attribution::Candidate> candidates;
  std::uint64_t allocs = 0;
  std::uint64_t v = 0;
  std::uint64_t won = 0;
  for (auto _ : state) {
    candidates.clear();
    std::uint64_t before = bench::thread_allocations();
    auto m = attribution::match(*f.store,
                                {.visitor_hash = visitor_of(v),
                                 .at_ms = kT0 + 10 * kDayMs,
                                 .window_ms = 30 * kDayMs,
                                 .model = attribution::Model::kLastClick,
                                 .program = "acme",
                                 .need_id = need_id},
                                list ? &candidates : nullptr);
    allocs += bench::thread_allocations() - before;
    won += m && *m ? 1 : 0;
    v = (v + 7919) % kVisitors;
  }
  if (won != static_cast<std::uint64_t>(state.iterations())) {
    state.SkipWithError("a visitor with clicks found no winner");
  }
  state.counters["allocs_per_match"] =
      benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
}

BENCHMARK(BM_Match)->ArgNames({"need_id", "list"})->Args({0, 0})->Args({1, 0})->Args({1, 1});

}  // namespace
