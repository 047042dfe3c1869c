#include "earnd/ingest/bot_classifier.h"

#include <cstdint>
#include <memory>
#include <string_view>

#include <benchmark/benchmark.h>

namespace earnd::ingest {
namespace {

constexpr std::string_view kChromeUa =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36";

constexpr std::string_view kGooglebotUa =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

// Built once per process: construction compiles about 1,500 patterns.
const BotClassifier& embedded() {
  static const std::unique_ptr<BotClassifier> classifier = BotClassifier::from_embedded();
  return *classifier;
}

void classify_loop(benchmark::State& state, std::string_view user_agent) {
  const BotClassifier& classifier = embedded();
  for (auto _ : state) {
    benchmark::DoNotOptimize(classifier.classify(user_agent));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * user_agent.size()));
}

// The common case: a browser matches nothing, so the whole user agent is scanned.
void BM_BotClassifier_Browser(benchmark::State& state) {
  classify_loop(state, kChromeUa);
}

void BM_BotClassifier_Bot(benchmark::State& state) {
  classify_loop(state, kGooglebotUa);
}

// Startup cost: parsing the embedded list and compiling the database.
void BM_BotClassifier_Build(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(BotClassifier::from_embedded());
  }
}

BENCHMARK(BM_BotClassifier_Browser);
BENCHMARK(BM_BotClassifier_Bot);
BENCHMARK(BM_BotClassifier_Build)->Unit(benchmark::kMillisecond)->Iterations(10);

}  // namespace
}  // namespace earnd::ingest
