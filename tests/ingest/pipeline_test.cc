#include "earnd/ingest/pipeline.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "earnd/common/click.h"
#include "earnd/common/click_id.h"
#include "earnd/common/error.h"
#include "earnd/ingest/sink.h"
#include "earnd/metrics/metrics.h"
#include "earnd/store/store.h"

namespace earnd::ingest {
namespace {

// A window-aligned start time, so velocity windows begin at a known click.
constexpr std::uint64_t kStartMs = 1'700'000'040'000;

// Records every batch it is given; can be told to fail.
class FakeSink final : public ClickSink {
 public:
  ErrorCode write(std::span<const ClickRecord> clicks, bool sync) override {
    std::lock_guard lock(mutex_);
    if (fail_) {
      return make_error_code(Errc::kStorage);
    }
    batches_.emplace_back(clicks.begin(), clicks.end());
    (sync ? synced_batches_ : unsynced_batches_) += 1;
    return {};
  }

  ErrorCode sync() override {
    std::lock_guard lock(mutex_);
    ++sync_calls_;
    return {};
  }

  std::size_t last_write_bytes() const noexcept override { return 100; }

  void set_fail(bool fail) {
    std::lock_guard lock(mutex_);
    fail_ = fail;
  }

  // Every click written so far, in write order.
  std::vector<ClickRecord> clicks() const {
    std::lock_guard lock(mutex_);
    std::vector<ClickRecord> all;
    for (const auto& b : batches_) {
      all.insert(all.end(), b.begin(), b.end());
    }
    return all;
  }

  // True once a click with this id was written.
  bool has(const ClickId& id) const {
    std::lock_guard lock(mutex_);
    for (const auto& b : batches_) {
      for (const auto& c : b) {
        if (c.id == id) {
          return true;
        }
      }
    }
    return false;
  }

  int synced_batches() const {
    std::lock_guard lock(mutex_);
    return synced_batches_;
  }

  int unsynced_batches() const {
    std::lock_guard lock(mutex_);
    return unsynced_batches_;
  }

  int sync_calls() const {
    std::lock_guard lock(mutex_);
    return sync_calls_;
  }

 private:
  mutable std::mutex mutex_;
  bool fail_ = false;
  std::vector<std::vector<ClickRecord>> batches_;
  int synced_batches_ = 0;
  int unsynced_batches_ = 0;
  int sync_calls_ = 0;
};

// Counts its calls; when given a sink and a click id, also notes whether the click had been
// written by then, and on which thread it was told.
class CountingWaiter final : public CommitWaiter {
 public:
  void on_committed(bool stored) noexcept override {
    ++calls;
    last_stored = stored;
    thread = std::this_thread::get_id();
    written_before = sink != nullptr && sink->has(id);
  }

  int calls = 0;
  bool last_stored = false;
  const FakeSink* sink = nullptr;
  ClickId id;
  bool written_before = false;
  std::thread::id thread;
};

class PipelineTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (pipeline_) {
      pipeline_->stop();
    }
  }

  // Builds the pipeline with a waker per lane that counts and signals the test thread.
  void make(PipelineOptions options, int lanes, ClickSink& sink) {
    pipeline_ = std::make_unique<Pipeline>(options, sink, metrics_, lanes);
    for (int i = 0; i < lanes; ++i) {
      pipeline_->set_waker(i, [this] {
        std::lock_guard lock(wake_mutex_);
        ++wakes_;
        wake_cv_.notify_all();
      });
    }
  }

  void make(PipelineOptions options, int lanes = 1) { make(options, lanes, sink_); }

  static ClickRecord click(std::uint64_t ts_ms,
                           std::uint64_t visitor = 1,
                           std::string code = "summer24") {
    ClickRecord c;
    c.id = make_click_id(ts_ms, 0);
    c.ts_ms = ts_ms;
    c.visitor_hash = visitor;
    c.program = "acme";
    c.code = std::move(code);
    return c;
  }

  void submit(int lane, const ClickRecord& c, CommitWaiter* waiter = nullptr) {
    ASSERT_TRUE(pipeline_->try_submit(lane, {.record = c, .dedupe_ms = 1000, .waiter = waiter}));
  }

  // Drains every lane each time the writer wakes one, until each waiter heard back or 10 s pass.
  void wait_for(const std::vector<CountingWaiter>& waiters, int lanes) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    auto all_done = [&] {
      for (const auto& w : waiters) {
        if (w.calls == 0) {
          return false;
        }
      }
      return true;
    };
    while (!all_done() && std::chrono::steady_clock::now() < deadline) {
      {
        std::unique_lock lock(wake_mutex_);
        wake_cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return wakes_ > drained_; });
        drained_ = wakes_;
      }
      for (int i = 0; i < lanes; ++i) {
        pipeline_->drain_completions(i);
      }
    }
  }

  FakeSink sink_;
  metrics::Metrics metrics_;
  std::unique_ptr<Pipeline> pipeline_;
  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  int wakes_ = 0;
  int drained_ = 0;
};

TEST_F(PipelineTest, GroupModeCompletesEachWaiterOnceAfterSync) {
  make({.sync_each_batch = true, .max_batch = 16}, 2);
  pipeline_->start();
  std::vector<CountingWaiter> waiters(200);

  for (int i = 0; i < 200; ++i) {
    ClickRecord c = click(kStartMs + i, i);
    waiters[i].sink = &sink_;
    waiters[i].id = c.id;
    submit(i % 2, c, &waiters[i]);
  }
  wait_for(waiters, 2);
  pipeline_->stop();
  pipeline_->drain_completions(0);
  pipeline_->drain_completions(1);

  // Completions run in drain_completions on this thread, after the click's batch was written.
  for (const auto& w : waiters) {
    EXPECT_EQ(w.calls, 1);
    EXPECT_TRUE(w.last_stored);
    EXPECT_TRUE(w.written_before);
    EXPECT_EQ(w.thread, std::this_thread::get_id());
  }
  EXPECT_GE(wakes_, 1);
  EXPECT_GT(sink_.synced_batches(), 0);
  EXPECT_EQ(sink_.unsynced_batches(), 0);
  EXPECT_EQ(sink_.clicks().size(), 200u);
}

TEST_F(PipelineTest, KeepsSubmissionOrderWithinEachLane) {
  make({.max_batch = 7}, 3);
  pipeline_->start();

  // The lane is in the visitor hash's high bits, the sequence in its low bits.
  for (std::uint64_t i = 0; i < 3000; ++i) {
    int lane = static_cast<int>(i % 3);
    submit(lane, click(kStartMs, (std::uint64_t{1} + lane) << 32 | i));
  }
  pipeline_->stop();

  std::vector<std::uint64_t> last(3, 0);
  std::vector<int> seen(3, 0);
  for (const auto& c : sink_.clicks()) {
    int lane = static_cast<int>((c.visitor_hash >> 32) - 1);
    std::uint64_t seq = c.visitor_hash & 0xffffffff;
    EXPECT_TRUE(seen[lane] == 0 || seq > last[lane]) << "lane " << lane << " seq " << seq;
    last[lane] = seq;
    ++seen[lane];
  }
  EXPECT_EQ(seen, (std::vector<int>{1000, 1000, 1000}));
}

TEST_F(PipelineTest, MarksRepeatWithinDedupeWindowNotUnique) {
  make({});
  pipeline_->start();

  // Dedupe window 1000 ms, per (visitor, code).
  submit(0, click(kStartMs, 1));
  submit(0, click(kStartMs + 500, 1));           // repeat inside the window
  submit(0, click(kStartMs + 600, 2));           // another visitor
  submit(0, click(kStartMs + 700, 1, "other"));  // another link
  submit(0, click(kStartMs + 1000, 1));          // the window has passed
  submit(0, click(kStartMs + 1500, 1));          // inside the new window
  pipeline_->stop();

  std::vector<ClickRecord> out = sink_.clicks();
  ASSERT_EQ(out.size(), 6u);
  std::vector<bool> unique;
  for (const auto& c : out) {
    unique.push_back(c.unique);
  }
  EXPECT_EQ(unique, (std::vector<bool>{true, false, true, true, true, false}));
}

TEST_F(PipelineTest, FlagsClicksOverTheVelocityLimit) {
  make({.velocity_limit = 3, .velocity_window_ms = 60'000});
  pipeline_->start();

  for (int i = 0; i < 5; ++i) {
    submit(0, click(kStartMs + i, 7, "code" + std::to_string(i)));
  }
  submit(0, click(kStartMs + 10, 8));      // another visitor has its own count
  submit(0, click(kStartMs + 60'000, 7));  // the next window starts over
  pipeline_->stop();

  std::vector<ClickRecord> out = sink_.clicks();
  ASSERT_EQ(out.size(), 7u);
  std::vector<ClickReason> reasons;
  for (const auto& c : out) {
    reasons.push_back(c.reason);
  }
  using R = ClickReason;
  EXPECT_EQ(reasons, (std::vector<R>{R::kHuman, R::kHuman, R::kHuman, R::kVelocity, R::kVelocity,
                                     R::kHuman, R::kHuman}));
  EXPECT_EQ(metrics_.clicks_by_reason[static_cast<int>(R::kVelocity)].load(), 2u);
  EXPECT_EQ(metrics_.clicks_by_reason[static_cast<int>(R::kHuman)].load(), 5u);
}

TEST_F(PipelineTest, VelocityKeepsAnEarlierReason) {
  make({.velocity_limit = 1});
  pipeline_->start();

  ClickRecord bot = click(kStartMs + 1, 7);
  bot.reason = ClickReason::kBotUa;
  submit(0, click(kStartMs, 7));
  submit(0, bot);
  pipeline_->stop();

  std::vector<ClickRecord> out = sink_.clicks();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].reason, ClickReason::kHuman);
  EXPECT_EQ(out[1].reason, ClickReason::kBotUa);
}

TEST_F(PipelineTest, ReportsFailedWritesToWaitersAndReadiness) {
  make({.sync_each_batch = true});
  sink_.set_fail(true);
  pipeline_->start();
  std::vector<CountingWaiter> waiters(3);

  for (int i = 0; i < 3; ++i) {
    submit(0, click(kStartMs + i, i), &waiters[i]);
  }
  wait_for(waiters, 1);

  for (const auto& w : waiters) {
    EXPECT_EQ(w.calls, 1);
    EXPECT_FALSE(w.last_stored);
  }
  EXPECT_FALSE(pipeline_->storage_ok());
  EXPECT_EQ(metrics_.clicks_dropped_storage.load(), 3u);
  EXPECT_EQ(metrics_.clicks_stored.load(), 0u);
}

TEST_F(PipelineTest, StorageRecoversAfterALaterWriteSucceeds) {
  make({.sync_each_batch = true});
  sink_.set_fail(true);
  pipeline_->start();
  std::vector<CountingWaiter> failed(1);
  submit(0, click(kStartMs), &failed[0]);
  wait_for(failed, 1);
  ASSERT_FALSE(pipeline_->storage_ok());

  sink_.set_fail(false);
  std::vector<CountingWaiter> stored(1);
  submit(0, click(kStartMs + 1), &stored[0]);
  wait_for(stored, 1);

  EXPECT_TRUE(stored[0].last_stored);
  EXPECT_TRUE(pipeline_->storage_ok());
}

TEST_F(PipelineTest, RejectsSubmitWhenLaneIsFull) {
  make({.queue_capacity = 4});

  // The writer is not running, so nothing leaves the queue.
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(pipeline_->try_submit(0, {.record = click(kStartMs + i)})) << i;
  }
  EXPECT_FALSE(pipeline_->try_submit(0, {.record = click(kStartMs + 4)}));
  EXPECT_EQ(pipeline_->queue_depth(), 4u);
  EXPECT_EQ(pipeline_->queue_capacity(), 4u);

  pipeline_->start();
  pipeline_->stop();
  EXPECT_EQ(sink_.clicks().size(), 4u);
  EXPECT_EQ(pipeline_->queue_depth(), 0u);
}

// A lane's thread may stop draining (main() stops the I/O threads before the pipeline), so the
// writer must not wait for room in a lane's completion queue forever.
TEST_F(PipelineTest, RefusesClicksBeyondUndrainedCompletionsAndStopStillReturns) {
  make({.sync_each_batch = true, .queue_capacity = 4});
  pipeline_->start();
  std::vector<CountingWaiter> waiters(5);

  // Four completions fill the lane's completion queue; nobody drains it.
  for (int i = 0; i < 4; ++i) {
    submit(0, click(kStartMs + i, i), &waiters[i]);
  }
  {
    std::unique_lock lock(wake_mutex_);
    ASSERT_TRUE(wake_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return wakes_ > 0; }));
  }
  // A fifth click with a waiter would need a fifth completion slot: refused, not queued.
  EXPECT_FALSE(pipeline_->try_submit(
      0, {.record = click(kStartMs + 4, 4), .dedupe_ms = 1000, .waiter = &waiters[4]}));

  auto stopped = std::async(std::launch::async, [this] { pipeline_->stop(); });
  bool returned = stopped.wait_for(std::chrono::seconds(3)) == std::future_status::ready;
  while (stopped.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
    pipeline_->drain_completions(0);
  }
  EXPECT_TRUE(returned) << "stop() waited for the lane to drain its completions";
  EXPECT_EQ(sink_.clicks().size(), 4u);
  pipeline_->drain_completions(0);
  EXPECT_EQ(waiters[0].calls, 1);
  EXPECT_EQ(waiters[4].calls, 0);
}

TEST_F(PipelineTest, RejectsSubmitAfterStop) {
  make({});
  pipeline_->start();
  pipeline_->stop();

  EXPECT_FALSE(pipeline_->try_submit(0, {.record = click(kStartMs)}));
  pipeline_->stop();  // a second stop is harmless
}

TEST_F(PipelineTest, StopWritesEverythingAlreadySubmitted) {
  make({.sync_each_batch = false, .max_batch = 256});
  pipeline_->start();

  for (int i = 0; i < 10'000; ++i) {
    submit(0, click(kStartMs + i, i));
  }
  pipeline_->stop();

  EXPECT_EQ(sink_.clicks().size(), 10'000u);
  EXPECT_EQ(sink_.synced_batches(), 0);
  EXPECT_GE(sink_.sync_calls(), 1);  // stop() syncs what async durability left unsynced
  EXPECT_EQ(metrics_.clicks_stored.load(), 10'000u);
  EXPECT_EQ(metrics_.clicks_by_reason[0].load(), 10'000u);
  EXPECT_EQ(metrics_.bytes_written.load() % 100, 0u);
  EXPECT_GT(metrics_.bytes_written.load(), 0u);
}

// A sink whose writes take 2 ms, so a steady producer keeps the writer's queue from ever
// emptying; counts writes and WAL syncs.
class SlowSink final : public ClickSink {
 public:
  ErrorCode write(std::span<const ClickRecord> clicks, bool sync) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    writes.fetch_add(1);
    return {};
  }

  ErrorCode sync() override {
    syncs.fetch_add(1);
    return {};
  }

  std::size_t last_write_bytes() const noexcept override { return 1; }

  std::atomic<int> writes{0};
  std::atomic<int> syncs{0};
};

// Async durability under sustained load: the queue never empties, and the WAL must still be
// synced every flush interval (10 ms here), not only when the writer runs out of work.
TEST_F(PipelineTest, AsyncSyncsTheWalOnScheduleWhileTheQueueNeverEmpties) {
  SlowSink slow;
  make({.sync_each_batch = false, .max_batch = 16, .queue_capacity = 1024, .flush_interval_ms = 10},
       1, slow);
  pipeline_->start();
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  std::uint64_t i = 0;
  int never_empty_checks = 0;
  int empty_seen = 0;
  while (std::chrono::steady_clock::now() < until) {
    while (pipeline_->try_submit(0, {.record = click(kStartMs + i, i), .dedupe_ms = 1000})) {
      ++i;
    }
    ++never_empty_checks;
    empty_seen += pipeline_->queue_depth() == 0 ? 1 : 0;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  int syncs_under_load = slow.syncs.load();
  int writes_under_load = slow.writes.load();
  pipeline_->stop();

  EXPECT_EQ(empty_seen, 0) << "the queue emptied, so the load was not sustained";
  EXPECT_GT(writes_under_load, 20);
  // 300 ms of load at one sync per 10 ms interval (after a 2 ms write) is about 25 syncs; even
  // a slow machine must show several. Before the fix there were none until stop().
  EXPECT_GE(syncs_under_load, 5) << "writes " << writes_under_load << ", checks "
                                 << never_empty_checks;
}

// The real sink: clicks reach RocksDB with the writer's unique flags.
class PipelineStoreTest : public PipelineTest {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "earnd_pipeline_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    store_ = store::Store::open({.data_dir = dir_, .block_cache_mb = 8});
    store_sink_ = std::make_unique<StoreSink>(*store_);
  }

  void TearDown() override {
    PipelineTest::TearDown();
    pipeline_.reset();
    store_sink_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<StoreSink> store_sink_;
};

TEST_F(PipelineStoreTest, StoresCommittedClicksInRocksDb) {
  make({.sync_each_batch = true, .max_batch = 8}, 1, *store_sink_);
  pipeline_->start();
  std::vector<CountingWaiter> waiters(20);

  // Visitors 0..9 twice each, the second time inside the dedupe window.
  for (int i = 0; i < 20; ++i) {
    submit(0, click(kStartMs + i, i % 10), &waiters[i]);
  }
  wait_for(waiters, 1);
  pipeline_->stop();

  for (const auto& w : waiters) {
    EXPECT_EQ(w.calls, 1);
    EXPECT_TRUE(w.last_stored);
  }
  int stored = 0;
  int unique = 0;
  Result<std::uint64_t> r = store_->scan_clicks(0, UINT64_MAX, [&](const ClickRecord& c) {
    ++stored;
    unique += c.unique ? 1 : 0;
    return true;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(stored, 20);
  EXPECT_EQ(unique, 10);
  auto counts = store_->link_day_counts("summer24", store::day_of(kStartMs));
  EXPECT_EQ(counts->clicks, 20u);
  EXPECT_EQ(counts->unique_clicks, 10u);
  EXPECT_EQ(metrics_.clicks_stored.load(), 20u);
}

}  // namespace
}  // namespace earnd::ingest
