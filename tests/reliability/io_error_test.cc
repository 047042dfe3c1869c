// I/O errors: the disk under the store starts failing every write and sync while clicks keep
// coming, then heals. Clicks written while it fails must be refused (never acknowledged) and
// the pipeline must report storage as failing (/readyz). Debian's RocksDB 7.8 deems a failed
// write-ahead-log write fatal, both for EIO (a failing disk) and for ENOSPC met by RocksDB
// itself (the disk filled between earnd's free-space check and the write), and refuses every
// later write until the store is opened again, even when it is asked to resume while the disk
// still fails. So the store must say it needs a restart, nothing may be acknowledged after the
// disk heals, and the restart (the store reopened) must hold every acknowledged click exactly
// once and accept new ones.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "drop_unsynced_fs.h"
#include "earnd/common/click.h"
#include "earnd/common/click_id.h"
#include "earnd/ingest/pipeline.h"
#include "earnd/ingest/sink.h"
#include "earnd/metrics/metrics.h"
#include "earnd/store/store.h"
#include "reliability_env.h"

namespace earnd::reliability {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kMaxClicks = 400'000;
constexpr std::chrono::milliseconds kStartDeadline{10'000};  // bounded wait for the first batch
constexpr std::chrono::milliseconds kAfterHeal{1'500};       // clicks sent after the disk heals

// 0 waiting, 1 stored, -1 refused; set on the producer's thread.
struct AckWaiter final : ingest::CommitWaiter {
  std::vector<signed char>* state = nullptr;
  std::size_t index = 0;

  void on_committed(bool stored) noexcept override { (*state)[index] = stored ? 1 : -1; }
};

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

using IoErrors = DropUnsyncedFs::IoErrors;

struct Outcome {
  std::size_t submitted = 0;
  std::size_t acknowledged = 0;
  std::size_t refused = 0;
  std::size_t lost = 0;        // acknowledged, not in the reopened store
  std::size_t duplicated = 0;  // stored twice
  std::uint64_t failed_fs_calls = 0;
  int recovered_rounds = 0;           // 1 when a click was stored after the disk healed
  bool ready_while_failing = false;   // storage_ok() true while every write failed
  bool ready_after_heal = false;      // storage_ok() true after the disk healed
  bool needs_restart_before = false;  // Store::needs_restart() before the failure
  bool needs_restart = false;         // Store::needs_restart() after the disk healed
  bool stored_after_reopen = false;   // a new click stored after the store was reopened
};

class IoErrorTest : public ::testing::Test {
 protected:
  // Runs clicks through a group-durability pipeline while the disk fails with `kind` for 50 to
  // 250 ms, goes on for a while after it heals, then reopens the store (the restart) and checks
  // what it holds.
  Outcome run(IoErrors kind, std::mt19937_64& rng) {
    Outcome o;
    auto fs = std::make_shared<DropUnsyncedFs>();
    auto store = store::Store::open({.data_dir = dir_.path().string(), .file_system = fs});
    ingest::StoreSink sink(*store);
    metrics::Metrics metrics;
    ingest::Pipeline pipeline({.sync_each_batch = true,
                               .max_batch = 512,
                               .queue_capacity = 4096,
                               .warn_interval_ms = 60'000},
                              sink, metrics, 1);
    pipeline.set_waker(0, [] {});  // the producer drains completions as it goes
    pipeline.start();

    std::vector<ClickId> ids(kMaxClicks);
    std::vector<signed char> state(kMaxClicks, 0);
    std::vector<AckWaiter> waiters(kMaxClicks);
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> submitted{0};
    std::thread producer([&] {
      ClickRecord c{.program = "acme", .referrer_id = "rf_1", .code = "ana"};
      std::size_t n = 0;
      while (!stop.load(std::memory_order_relaxed) && n < kMaxClicks) {
        for (int burst = 0; burst < 32 && n < kMaxClicks; ++burst) {
          c.ts_ms = now_ms();
          c.id = make_click_id(c.ts_ms, static_cast<std::uint8_t>(n % 64));
          c.visitor_hash = n;
          waiters[n].state = &state;
          waiters[n].index = n;
          if (!pipeline.try_submit(0, {.record = c, .waiter = &waiters[n]})) {
            break;  // full: the server would answer without a click id
          }
          ids[n] = c.id;
          ++n;
        }
        submitted.store(n, std::memory_order_release);
        pipeline.drain_completions(0);
        std::this_thread::sleep_for(500us);
      }
    });

    auto wait_for_stored = [&](std::uint64_t above, std::chrono::milliseconds limit) {
      auto deadline = std::chrono::steady_clock::now() + limit;
      while (metrics.clicks_stored.load(std::memory_order_relaxed) <= above &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
      }
      return metrics.clicks_stored.load(std::memory_order_relaxed) > above;
    };

    bool started = wait_for_stored(0, kStartDeadline);
    EXPECT_TRUE(started) << "nothing was stored before the disk failed";
    std::uniform_int_distribution<int> fail_ms(50, 250);
    if (started) {
      std::this_thread::sleep_for(50ms);
      o.needs_restart_before = store->needs_restart();
      fs->set_io_errors(kind);
      std::this_thread::sleep_for(std::chrono::milliseconds(fail_ms(rng)));
      o.ready_while_failing = pipeline.storage_ok();
      auto stored_at_heal = metrics.clicks_stored.load(std::memory_order_relaxed);
      fs->set_io_errors(IoErrors::kNone);
      // Clicks keep coming for a while after the disk heals: none may be acknowledged.
      o.recovered_rounds = wait_for_stored(stored_at_heal, kAfterHeal) ? 1 : 0;
      o.ready_after_heal = pipeline.storage_ok();
      o.needs_restart = store->needs_restart();
    }
    std::this_thread::sleep_for(50ms);
    stop.store(true);
    producer.join();
    pipeline.stop();
    pipeline.drain_completions(0);  // the producer has ended; this thread now owns the lane
    store.reset();
    o.failed_fs_calls = fs->refused_calls();

    // The restart: the store reopened on the healed disk.
    auto reopened = store::Store::open({.data_dir = dir_.path().string()});
    std::set<std::string, std::less<>> kept;
    std::size_t rows = 0;
    auto scanned = reopened->scan_clicks(0, UINT64_MAX, [&](const ClickRecord& c) {
      kept.emplace(c.id.key());
      ++rows;
      return true;
    });
    EXPECT_TRUE(scanned) << "the reopened store could not be read";
    EXPECT_EQ(scanned ? *scanned : 1u, 0u) << "corrupt click records";
    o.duplicated = rows - kept.size();
    o.submitted = submitted.load();
    for (std::size_t i = 0; i < o.submitted; ++i) {
      o.acknowledged += state[i] == 1;
      o.refused += state[i] == -1;
      o.lost += state[i] == 1 && kept.count(ids[i].key()) == 0;
    }

    ingest::StoreSink after(*reopened);
    ClickRecord c{.program = "acme", .referrer_id = "rf_1", .code = "ana"};
    c.ts_ms = now_ms();
    c.id = make_click_id(c.ts_ms, 1);
    o.stored_after_reopen = !after.write(std::span(&c, 1), true);
    return o;
  }

  static void report(std::string_view test, std::uint64_t seed, const Outcome& o) {
    report_figures(test,
                   "seed=" + std::to_string(seed) + " submitted=" + std::to_string(o.submitted) +
                       " acknowledged=" + std::to_string(o.acknowledged) +
                       " refused=" + std::to_string(o.refused) + " lost=" + std::to_string(o.lost) +
                       " duplicated=" + std::to_string(o.duplicated) +
                       " failed_fs_calls=" + std::to_string(o.failed_fs_calls) +
                       " needs_restart=" + std::to_string(o.needs_restart) +
                       " stored_after_restart=" + std::to_string(o.stored_after_reopen));
  }

  void expect_refused_until_restart(IoErrors kind, std::string_view figures);

  TempDir dir_;
};

// Runs one kind of failure and checks it: refused while failing, nothing stored after healing
// until the restart (RocksDB keeps refusing after a fatal write error), nothing acknowledged
// lost, the reopened store writable.
void IoErrorTest::expect_refused_until_restart(IoErrors kind, std::string_view figures) {
  auto seed = reliability_seed();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  Outcome o = run(kind, rng);
  EXPECT_GT(o.failed_fs_calls, 0u);
  EXPECT_GT(o.refused, 0u);
  EXPECT_GT(o.acknowledged, 0u);
  EXPECT_EQ(o.lost, 0u) << "of " << o.acknowledged << " acknowledged clicks";
  EXPECT_EQ(o.duplicated, 0u);
  EXPECT_FALSE(o.ready_while_failing) << "storage reported healthy while every write failed";
  EXPECT_FALSE(o.needs_restart_before);
  EXPECT_TRUE(o.needs_restart) << "the store did not say it needs a restart";
  EXPECT_EQ(o.recovered_rounds, 0) << "a click was acknowledged after a fatal write error";
  EXPECT_TRUE(o.stored_after_reopen) << "the reopened store refused a write";
  report(figures, seed, o);
}

TEST_F(IoErrorTest, FailingDiskIsRefusedUntilRestartAndLosesNothingAcknowledged) {
  expect_refused_until_restart(IoErrors::kEio, "io_error_eio");
}

// The case storage.min_free_mb exists to prevent (DiskFullTest): RocksDB itself meets ENOSPC.
TEST_F(IoErrorTest, FullDiskMetByRocksDbIsRefusedUntilRestartAndLosesNothingAcknowledged) {
  expect_refused_until_restart(IoErrors::kNoSpace, "io_error_enospc");
}

}  // namespace
}  // namespace earnd::reliability
