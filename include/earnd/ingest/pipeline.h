#pragma once

// The ingest pipeline: I/O threads hand clicks to one writer thread through lock-free
// single-producer queues (one lane per I/O thread), and the writer group-commits them to a sink.
// In group durability a click's waiter hears back only after its batch is synced; the writer
// hands those completions back through a second lock-free queue per lane and wakes the lane's
// thread once per batch. The writer also sets each click's unique flag and velocity reason,
// since it sees every click in order without any lock.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "earnd/common/click.h"
#include "earnd/ingest/sink.h"

namespace earnd::metrics {
class Metrics;
}

namespace earnd::ingest {

// Told whether a click reached storage. Implemented by the HTTP session that answers the
// redirect; it must stay alive until on_committed runs (on its lane's thread).
class CommitWaiter {
 public:
  virtual void on_committed(bool stored) noexcept = 0;

 protected:
  ~CommitWaiter() = default;
};

struct PendingClick {
  ClickRecord record;
  std::uint64_t dedupe_ms = 0;    // the program's dedupe window
  CommitWaiter* waiter = nullptr; // null in async durability
};

struct PipelineOptions {
  bool sync_each_batch = true;              // group durability
  std::uint32_t max_batch = 4096;
  std::uint32_t queue_capacity = 65'536;    // per lane
  std::uint32_t flush_interval_ms = 10;     // async durability: WAL sync period
  std::uint32_t velocity_limit = 0;         // clicks per visitor per window; 0 is off
  std::uint32_t velocity_window_ms = 60'000;
  std::uint32_t dedupe_capacity = 1'000'000;
  std::uint32_t warn_interval_ms = 10'000;
  // Called on the writer thread for each click after its batch is stored (for example to
  // announce a referrer's first click). Must be quick; may be empty.
  std::function<void(const ClickRecord&)> on_stored;
};

class Pipeline {
 public:
  // lanes: the number of producer threads. sink and metrics must outlive the pipeline.
  Pipeline(PipelineOptions options, ClickSink& sink, metrics::Metrics& metrics, int lanes);
  ~Pipeline();

  // How the writer asks lane's thread to call drain_completions (for example by posting to its
  // io_context). Set for every lane before start(); called from the writer thread.
  void set_waker(int lane, std::function<void()> wake);

  void start();

  // Stops the writer after it has written every click already submitted, then syncs. Call after
  // the producers have stopped submitting. Blocks; safe to call twice.
  void stop();

  // Hands a click to the writer. Only lane's own thread may call this. Lock-free; returns false
  // when the lane's queue is full (the caller decides what to tell the client), or after stop().
  [[nodiscard]] bool try_submit(int lane, const PendingClick& click) noexcept;

  // Delivers finished commits of lane to their waiters. Only lane's own thread may call this.
  void drain_completions(int lane) noexcept;

  // Clicks waiting in all lanes (approximate, for metrics and /readyz).
  std::size_t queue_depth() const noexcept;
  std::size_t queue_capacity() const noexcept;

  // False after a write failed, until a later write succeeds (for /readyz).
  bool storage_ok() const noexcept { return storage_ok_.load(std::memory_order_relaxed); }

 private:
  struct Lane;
  struct Writer;
  void run();
  void classify_in_writer(ClickRecord& c, std::uint64_t dedupe_ms);
  void commit(bool& unsynced);
  void sleep_until_work(std::uint32_t seen_signal, bool unsynced);
  void wake_writer() noexcept;

  PipelineOptions options_;
  ClickSink& sink_;
  metrics::Metrics& metrics_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::unique_ptr<Writer> writer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> writer_sleeping_{false};
  std::atomic<std::uint32_t> signal_{0};
  std::atomic<bool> storage_ok_{true};
};

}  // namespace earnd::ingest
