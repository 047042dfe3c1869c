// What the SerializedSink in front of the server's sink costs the writer per batch (it lets an
// admin import share the sink with the pipeline writer): the same call through a sink that does
// nothing, directly and behind the wrapper, so that only the wrapper's lock and atomic store are
// measured, not RocksDB (whose batch write is measured in bench/store).

#include "earnd/ingest/sink.h"

#include <span>
#include <vector>

#include <benchmark/benchmark.h>

#include "earnd/common/click.h"

namespace {

using namespace earnd;

class NullSink final : public ingest::ClickSink {
 public:
  ErrorCode write(std::span<const ClickRecord> clicks, bool) override {
    benchmark::DoNotOptimize(clicks.data());
    return {};
  }

  ErrorCode sync() override { return {}; }

  std::size_t last_write_bytes() const noexcept override { return 64; }
};

void BM_SinkCall(benchmark::State& state) {
  NullSink plain;
  ingest::SerializedSink locked(plain);
  ingest::ClickSink& sink = state.range(0) != 0 ? static_cast<ingest::ClickSink&>(locked) : plain;
  std::vector<ClickRecord> batch(64);
  for (auto _ : state) {
    benchmark::DoNotOptimize(sink.write(batch, false));
    benchmark::DoNotOptimize(sink.last_write_bytes());
  }
}

BENCHMARK(BM_SinkCall)->ArgName("serialized")->Arg(0)->Arg(1);

}  // namespace
