#pragma once

// Where the ingest writer puts clicks. The embedded sink appends them to RocksDB; a distributed
// log can be a second implementation without the pipeline changing.

#include <atomic>
#include <memory>
#include <mutex>
#include <span>

#include "earnd/common/click.h"
#include "earnd/common/error.h"

namespace earnd::store {
class Store;
}

namespace earnd::ingest {

class ClickSink {
 public:
  virtual ~ClickSink() = default;

  // Writes clicks as one atomic unit; with sync, returns only once they survive a power cut.
  // Called from the writer thread only. Returns the failure as an ErrorCode, never throws.
  [[nodiscard]] virtual ErrorCode write(std::span<const ClickRecord> clicks, bool sync) = 0;

  // Makes every earlier write durable (async durability's periodic flush).
  [[nodiscard]] virtual ErrorCode sync() = 0;

  // Bytes the last write handed to storage, for metrics.
  virtual std::size_t last_write_bytes() const noexcept = 0;
};

// Lets two writers share one sink: the server's pipeline writer and an admin import, whose
// batches must not interleave with the writer's (the scale-out spool numbers its entries).
// One uncontended lock per batch, not per click.
class SerializedSink final : public ClickSink {
 public:
  explicit SerializedSink(ClickSink& inner) : inner_(inner) {}

  ErrorCode write(std::span<const ClickRecord> clicks, bool sync) override {
    std::lock_guard lock(mutex_);
    ErrorCode ec = inner_.write(clicks, sync);
    last_bytes_.store(inner_.last_write_bytes(), std::memory_order_relaxed);
    return ec;
  }

  ErrorCode sync() override {
    std::lock_guard lock(mutex_);
    return inner_.sync();
  }

  // The last batch's bytes, whichever writer wrote it (read without the lock).
  std::size_t last_write_bytes() const noexcept override {
    return last_bytes_.load(std::memory_order_relaxed);
  }

 private:
  ClickSink& inner_;
  std::mutex mutex_;
  std::atomic<std::size_t> last_bytes_{0};
};

// The embedded sink: one RocksDB WriteBatch per call. The store must outlive the sink.
class StoreSink final : public ClickSink {
 public:
  explicit StoreSink(store::Store& store);
  ~StoreSink() override;

  ErrorCode write(std::span<const ClickRecord> clicks, bool sync) override;
  ErrorCode sync() override;

  std::size_t last_write_bytes() const noexcept override { return last_bytes_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::size_t last_bytes_ = 0;
};

}  // namespace earnd::ingest
