#pragma once

// The load generator: connections spread over threads, each thread with its own io_context,
// clicking /r/{code} links and, for a share of the clicks, reporting a sale for the click id.
//
// Closed loop (rate 0): every connection sends its next click as soon as the last one was
// answered, for the highest throughput; latency runs from the send. Open loop (rate > 0): each
// connection follows a fixed schedule (together they offer `rate` clicks per second) and latency
// runs from each click's intended send time, so a server that stalls is charged for the clicks
// that queued behind the stall instead of hiding it (coordinated omission).

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "earnbench/latency.h"
#include "earnbench/target.h"

namespace earnbench {

struct LoadOptions {
  HttpEndpoint endpoint;
  std::vector<std::string> codes;  // Rank 0 is the most popular.
  double zipf = 1.1;
  std::chrono::nanoseconds duration = std::chrono::seconds(10);
  std::uint64_t max_requests = 0;  // Clicks to send at most; 0: bounded by the duration only.
  unsigned connections = 16;
  unsigned threads = 2;
  double rate = 0;            // Clicks per second over all connections; 0: closed loop.
  double new_conn_share = 0;  // Share of clicks sent on a connection of their own.
  double bot_share = 0.02;
  double conversions_per_click = 0;
  std::string program_key;  // Needed when conversions_per_click > 0.
  std::string currency = "USD";
  std::chrono::nanoseconds timeout = std::chrono::seconds(5);  // Per request.
  std::uint64_t seed = 1;
  // Set (from a signal handler) to end the run early: no new clicks, what is in flight is cut
  // off, and the figures cover the part that ran.
  const std::atomic<bool>* interrupt = nullptr;
};

// What the connections of one thread counted; merged over threads at the end.
struct LoadStats {
  LatencyHistogram latency;
  std::uint64_t responses = 0;                 // Click requests answered with any status.
  std::array<std::uint64_t, 600> by_status{};  // Index = HTTP status; others go to by_status[0].
  std::uint64_t connect_errors = 0;
  std::uint64_t write_errors = 0;
  std::uint64_t read_errors = 0;
  std::uint64_t timeouts = 0;
  std::uint64_t new_connections = 0;
  std::uint64_t bot_requests = 0;
  std::uint64_t conversions_sent = 0;
  std::uint64_t conversions_accepted = 0;

  void merge(const LoadStats& other);
};

struct LoadResult {
  LoadStats stats;
  std::chrono::nanoseconds elapsed{0};  // From the first send to the last answer.
  bool interrupted = false;             // ended early through LoadOptions::interrupt
};

// Runs the load to its end: the duration, or max_requests clicks, whichever comes first. In
// flight requests then get up to `timeout` to finish; what is still open after that counts as
// timed out. Blocks the calling thread and starts `threads` threads. Throws std::runtime_error
// when the endpoint cannot be resolved.
LoadResult run_load(const LoadOptions& options);

}  // namespace earnbench
