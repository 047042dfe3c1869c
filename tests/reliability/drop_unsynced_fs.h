#pragma once

// A RocksDB file system for power-cut tests. It passes every call to the operating system's file
// system and remembers, for each file it opened for writing, how many bytes had reached the disk
// at the last Sync or Fsync. cut_power() makes every later write and sync fail (the machine is
// off); drop_unsynced() then truncates each file to its synced size, which is what survives
// a power cut on a file system that keeps nothing the application did not sync.
// set_io_errors() makes writes, syncs and new files fail with an I/O error as a failing disk
// (EIO) or a full one (ENOSPC) does, without losing what was written; kNone heals the disk.
//
// LIMIT: directory entries are taken as durable once made (a new or renamed file is never lost
// as a whole, only its unsynced bytes). RocksDB syncs its directory after creating the files
// that matter, so this only hides a missing directory sync, which these tests do not look for.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <rocksdb/file_system.h>

namespace earnd::reliability {

class DropUnsyncedFs : public rocksdb::FileSystemWrapper {
 public:
  DropUnsyncedFs();

  const char* Name() const override { return "earnd.DropUnsyncedFs"; }

  rocksdb::IOStatus NewWritableFile(const std::string& fname,
                                    const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                       const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname,
                                      const std::string& old_fname,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& from,
                               const std::string& to,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& fname,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;

  // From now on every write, sync and new file fails with an I/O error. Thread-safe.
  void cut_power() noexcept { off_.store(true, std::memory_order_relaxed); }

  bool power_off() const noexcept { return off_.load(std::memory_order_relaxed); }

  enum class IoErrors { kNone, kEio, kNoSpace };

  // While not kNone, every write, sync and new file fails with that error; nothing is dropped.
  // Thread-safe.
  void set_io_errors(IoErrors e) noexcept { io_errors_.store(e, std::memory_order_relaxed); }

  // True while writes fail: the power is off or I/O errors are on.
  bool failing() const noexcept {
    return power_off() || io_errors_.load(std::memory_order_relaxed) != IoErrors::kNone;
  }

  // Write or sync calls refused by failing() so far.
  std::uint64_t refused_calls() const noexcept { return refused_.load(std::memory_order_relaxed); }

  // The status a refused call returns; counts it.
  rocksdb::IOStatus refuse() noexcept;

  // Truncates every tracked file to its synced size; call after the store is closed. Returns
  // the bytes dropped.
  std::uint64_t drop_unsynced();

  // Successful Sync/Fsync calls on write-ahead log files (*.log) so far.
  std::uint64_t wal_syncs() const noexcept { return wal_syncs_.load(std::memory_order_relaxed); }

  // Called by the tracked files. Thread-safe.
  void appended(const std::string& fname, std::uint64_t bytes);
  void synced(const std::string& fname);

 private:
  struct Sizes {
    std::uint64_t written = 0;
    std::uint64_t synced = 0;
  };

  std::atomic<bool> off_{false};
  std::atomic<IoErrors> io_errors_{IoErrors::kNone};
  std::atomic<std::uint64_t> refused_{0};
  std::atomic<std::uint64_t> wal_syncs_{0};
  std::mutex mutex_;
  std::map<std::string, Sizes> files_;
};

}  // namespace earnd::reliability
