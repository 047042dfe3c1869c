#include "earnd/ingest/pipeline.h"

#include <chrono>

#include <boost/lockfree/spsc_queue.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include "earnd/log/log.h"
#include "earnd/metrics/metrics.h"

namespace earnd::ingest {
namespace {

struct Completion {
  CommitWaiter* waiter = nullptr;
  bool stored = false;
};

std::uint64_t mix(std::uint64_t a, std::uint64_t b) noexcept {
  a ^= b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2);
  return a;
}

std::uint64_t code_hash(std::string_view s) noexcept {
  std::uint64_t h = 1469598103934665603ULL;
  for (char c : s) {
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  }
  return h;
}

// Remembers recent events per key in two generations, so memory stays bounded by about
// 2 x capacity entries: when the young generation fills, the old one is dropped.
class RecentMap {
 public:
  explicit RecentMap(std::size_t capacity) : capacity_(capacity) {}

  std::uint64_t* find(std::uint64_t key) {
    if (auto it = young_.find(key); it != young_.end()) {
      return &it->second;
    }
    if (auto it = old_.find(key); it != old_.end()) {
      return &young_.emplace(key, it->second).first->second;
    }
    return nullptr;
  }

  std::uint64_t& insert(std::uint64_t key, std::uint64_t value) {
    if (young_.size() >= capacity_) {
      old_ = std::move(young_);
      young_.clear();
    }
    return young_.insert_or_assign(key, value).first->second;
  }

 private:
  std::size_t capacity_;
  boost::unordered_flat_map<std::uint64_t, std::uint64_t> young_;
  boost::unordered_flat_map<std::uint64_t, std::uint64_t> old_;
};

}  // namespace

struct Pipeline::Lane {
  explicit Lane(std::size_t capacity) : in(capacity), done(capacity) {}

  boost::lockfree::spsc_queue<PendingClick> in;
  boost::lockfree::spsc_queue<Completion> done;
  std::function<void()> wake;
  // Clicks with a waiter that this lane submitted and has not yet heard back about. Touched
  // only by the lane's own thread. Bounding it by the done queue's capacity means the writer's
  // push of a completion can never find that queue full.
  std::size_t outstanding = 0;
};

// State only the writer thread touches.
struct Pipeline::Writer {
  std::vector<ClickRecord> batch;
  std::vector<std::pair<int, CommitWaiter*>> waiters;
  RecentMap unique_window;  // (visitor, link) -> time of the last unique click
  RecentMap velocity;       // visitor -> window start (high 40 bits) and count (low 24 bits)
  log::RateLimitedWarn storage_warn;

  explicit Writer(const PipelineOptions& o)
      : unique_window(o.dedupe_capacity),
        velocity(o.dedupe_capacity),
        storage_warn(std::chrono::milliseconds(o.warn_interval_ms)) {}
};

Pipeline::Pipeline(PipelineOptions options, ClickSink& sink, metrics::Metrics& metrics, int lanes)
    : options_(options),
      sink_(sink),
      metrics_(metrics),
      writer_(std::make_unique<Writer>(options)) {
  for (int i = 0; i < lanes; ++i) {
    lanes_.push_back(std::make_unique<Lane>(options.queue_capacity));
  }
  writer_->batch.reserve(options.max_batch);
  writer_->waiters.reserve(options.max_batch);
}

Pipeline::~Pipeline() {
  stop();
}

void Pipeline::set_waker(int lane, std::function<void()> wake) {
  lanes_[lane]->wake = std::move(wake);
}

void Pipeline::start() {
  thread_ = std::thread([this] { run(); });
}

void Pipeline::stop() {
  stopping_.store(true, std::memory_order_release);
  wake_writer();
  if (thread_.joinable()) {
    thread_.join();
  }
}

bool Pipeline::try_submit(int lane, const PendingClick& click) noexcept {
  if (stopping_.load(std::memory_order_relaxed)) {
    return false;
  }
  Lane& l = *lanes_[lane];
  if (click.waiter != nullptr && l.outstanding >= options_.queue_capacity) {
    return false;
  }
  bool pushed = false;
  try {
    pushed = l.in.push(click);
  } catch (...) {
    pushed = false;  // copying the record ran out of memory
  }
  if (!pushed) {
    return false;
  }
  if (click.waiter != nullptr) {
    ++l.outstanding;
  }
  // Pairs with the fence in run(): either the writer sees this click when it re-checks the
  // queues, or this thread sees that the writer went to sleep and wakes it.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (writer_sleeping_.load(std::memory_order_relaxed)) {
    wake_writer();
  }
  return true;
}

void Pipeline::wake_writer() noexcept {
  signal_.fetch_add(1, std::memory_order_release);
  signal_.notify_one();
}

void Pipeline::drain_completions(int lane) noexcept {
  Lane& l = *lanes_[lane];
  Completion c;
  while (l.done.pop(c)) {
    --l.outstanding;
    c.waiter->on_committed(c.stored);
  }
}

std::size_t Pipeline::queue_depth() const noexcept {
  std::size_t n = 0;
  for (const auto& l : lanes_) {
    n += l->in.read_available();
  }
  return n;
}

std::size_t Pipeline::queue_capacity() const noexcept {
  return lanes_.size() * options_.queue_capacity;
}

// Sets the unique flag (first click of a visitor on a link in the program's dedupe window) and
// the velocity reason (a visitor clicking faster than the limit).
void Pipeline::classify_in_writer(ClickRecord& c, std::uint64_t dedupe_ms) {
  Writer& w = *writer_;
  std::uint64_t key = mix(c.visitor_hash, code_hash(c.code));
  std::uint64_t* last_unique = w.unique_window.find(key);
  c.unique = last_unique == nullptr || c.ts_ms >= *last_unique + dedupe_ms;
  if (c.unique) {
    w.unique_window.insert(key, c.ts_ms);
  }

  if (options_.velocity_limit > 0) {
    std::uint64_t window = c.ts_ms / options_.velocity_window_ms;
    std::uint64_t* entry = w.velocity.find(c.visitor_hash);
    if (entry == nullptr || (*entry >> 24) != window) {
      entry = &w.velocity.insert(c.visitor_hash, window << 24);
    }
    std::uint64_t count = (*entry & 0xffffff) + 1;
    *entry = (window << 24) | std::min<std::uint64_t>(count, 0xffffff);
    if (count > options_.velocity_limit && c.reason == ClickReason::kHuman) {
      c.reason = ClickReason::kVelocity;
    }
  }
  metrics_.clicks_by_reason[static_cast<int>(c.reason)].fetch_add(1, std::memory_order_relaxed);
}

// Writes the batch, then tells each waiting session whether its click was stored.
void Pipeline::commit(bool& unsynced) {
  Writer& w = *writer_;
  auto start = std::chrono::steady_clock::now();
  ErrorCode ec = sink_.write(w.batch, options_.sync_each_batch);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.commit_seconds.observe(seconds);
  metrics_.batch_size.observe(static_cast<double>(w.batch.size()));
  metrics_.bytes_written.fetch_add(sink_.last_write_bytes(), std::memory_order_relaxed);
  bool stored = !ec;
  storage_ok_.store(stored, std::memory_order_relaxed);
  if (stored) {
    metrics_.clicks_stored.fetch_add(w.batch.size(), std::memory_order_relaxed);
    unsynced = !options_.sync_each_batch;
    if (options_.on_stored) {
      for (const auto& c : w.batch) {
        options_.on_stored(c);
      }
    }
  } else {
    metrics_.clicks_dropped_storage.fetch_add(w.batch.size(), std::memory_order_relaxed);
    if (auto n = w.storage_warn.hit()) {
      log::get("ingest")->error("event=click_write_failed error=\"{}\" batches={} clicks={}",
                                ec.message(), n, w.batch.size());
    }
  }

  std::vector<bool> touched(lanes_.size(), false);
  for (auto [lane, waiter] : w.waiters) {
    if (waiter == nullptr) {
      continue;
    }
    // try_submit keeps the lane's outstanding waiters within the done queue's capacity, so
    // this push always succeeds; the loop only guards that invariant.
    while (!lanes_[lane]->done.push(Completion{waiter, stored})) {
      std::this_thread::yield();
    }
    touched[lane] = true;
  }
  for (std::size_t i = 0; i < lanes_.size(); ++i) {
    if (touched[i] && lanes_[i]->wake) {
      lanes_[i]->wake();
    }
  }
}

// Parks the writer until a producer signals, or until the next WAL sync is due.
void Pipeline::sleep_until_work(std::uint32_t seen_signal, bool unsynced) {
  writer_sleeping_.store(true, std::memory_order_relaxed);
  // Pairs with the fence in try_submit(); see there.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (queue_depth() == 0 && !stopping_.load(std::memory_order_acquire)) {
    if (unsynced) {
      // A timed wait is not available on std::atomic; a short sleep bounds the sync delay.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else {
      signal_.wait(seen_signal, std::memory_order_acquire);
    }
  }
  writer_sleeping_.store(false, std::memory_order_relaxed);
}

void Pipeline::run() {
  using Clock = std::chrono::steady_clock;
  Writer& w = *writer_;
  auto last_sync = Clock::now();
  bool unsynced = false;
  while (true) {
    std::uint32_t seen_signal = signal_.load(std::memory_order_acquire);
    bool stopping = stopping_.load(std::memory_order_acquire);

    // Take up to max_batch clicks, round-robin over the lanes.
    w.batch.clear();
    w.waiters.clear();
    bool took = true;
    while (took && w.batch.size() < options_.max_batch) {
      took = false;
      for (std::size_t i = 0; i < lanes_.size() && w.batch.size() < options_.max_batch; ++i) {
        PendingClick p;
        if (lanes_[i]->in.pop(p)) {
          took = true;
          classify_in_writer(p.record, p.dedupe_ms);
          w.batch.push_back(std::move(p.record));
          w.waiters.emplace_back(static_cast<int>(i), p.waiter);
        }
      }
    }
    // In async durability the WAL is synced once per flush interval, also while the queue
    // never empties under sustained load (the documented bound on what a crash may lose).
    auto interval = std::chrono::milliseconds(options_.flush_interval_ms);
    auto sync_if_due = [&](bool now) {
      if (!unsynced || !(now || Clock::now() - last_sync >= interval)) {
        return false;
      }
      if (auto ec = sink_.sync()) {
        log::get("ingest")->error("event=wal_sync_failed error=\"{}\"", ec.message());
      }
      unsynced = false;
      last_sync = Clock::now();
      return true;
    };
    if (!w.batch.empty()) {
      commit(unsynced);
      sync_if_due(false);
      continue;
    }

    // Nothing queued.
    if (sync_if_due(stopping)) {
      continue;
    }
    if (stopping) {
      break;
    }
    sleep_until_work(seen_signal, unsynced);
  }
}

}  // namespace earnd::ingest
