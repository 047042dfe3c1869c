#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>

#include "earnd/links/destination.h"

namespace earnd::links {
namespace {

const std::vector<std::string> kHosts = {"shop.example.com"};

constexpr std::string_view kDestination =
    "https://shop.example.com/collections/spring-sale?src=ref&lang=en#products";
constexpr std::string_view kUtmQuery =
    "utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2024&"
    "utm_content=hero_button&gclid=EAIaIQobChMI8pX2";
constexpr std::string_view kClickId = "01j9zq4m7e8x2v5k3c6b1n0p9r";

ParsedDestination shop_destination() {
  Result<ParsedDestination> parsed = parse_destination(kDestination, kHosts);
  return parsed.has_value() ? std::move(*parsed) : ParsedDestination{};
}

// One redirect's Location into a buffer reused across iterations, as a session would.
void run_build(benchmark::State& state, std::string_view incoming, std::string_view deep_path) {
  const ParsedDestination dest = shop_destination();
  if (dest.base.empty()) {
    state.SkipWithError("destination rejected");
    return;
  }
  const LocationParts parts{.incoming_query = incoming,
                            .deep_path = deep_path,
                            .ref_param = "ref",
                            .ref_value = "ana",
                            .click_param = "earnd_cid",
                            .click_value = kClickId};
  std::string out;
  for (auto _ : state) {
    out.clear();
    build_location(dest, parts, out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(out.size()));
  state.counters["location_bytes"] = static_cast<double>(out.size());
}

void BM_Location_Build(benchmark::State& state) {
  run_build(state, kUtmQuery, "");
}

BENCHMARK(BM_Location_Build);

void BM_Location_BuildDeepPath(benchmark::State& state) {
  run_build(state, kUtmQuery, "shoes/running/air-zoom-42");
}

BENCHMARK(BM_Location_BuildDeepPath);

// A hostile query of the given length: every byte needs encoding and names repeat.
void BM_Location_BuildHostileQuery(benchmark::State& state) {
  std::string incoming;
  while (incoming.size() < static_cast<std::size_t>(state.range(0))) {
    incoming += "ref=\r\n\x01\xff<>&a=\"\x7f&";
  }
  incoming.resize(static_cast<std::size_t>(state.range(0)));
  run_build(state, incoming, "");
}

BENCHMARK(BM_Location_BuildHostileQuery)->Range(64, 4096);

// The admin path, for scale: checking and normalizing the destination once.
void BM_Destination_Parse(benchmark::State& state) {
  for (auto _ : state) {
    Result<ParsedDestination> parsed = parse_destination(kDestination, kHosts);
    benchmark::DoNotOptimize(parsed);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_Destination_Parse);

}  // namespace
}  // namespace earnd::links
