#include "drop_unsynced_fs.h"

#include <filesystem>

namespace earnd::reliability {
namespace {

// A writable file that reports its appends and syncs to the file system, and fails every
// operation once the power is off.
class TrackedFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TrackedFile(std::unique_ptr<rocksdb::FSWritableFile> file, DropUnsyncedFs& fs, std::string name)
      : FSWritableFileOwnerWrapper(std::move(file)), fs_(fs), name_(std::move(name)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data,
                           const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (fs_.failing()) {
      return fs_.refuse();
    }
    auto s = target()->Append(data, options, dbg);
    if (s.ok()) {
      fs_.appended(name_, data.size());
    }
    return s;
  }

  rocksdb::IOStatus Append(const rocksdb::Slice& data,
                           const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    if (fs_.failing()) {
      return fs_.refuse();
    }
    auto s = target()->Append(data, options, info, dbg);
    if (s.ok()) {
      fs_.appended(name_, data.size());
    }
    return s;
  }

  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&,
                                     uint64_t,
                                     const rocksdb::IOOptions&,
                                     rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("positioned append");
  }

  rocksdb::IOStatus Flush(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    return fs_.failing() ? fs_.refuse() : target()->Flush(options, dbg);
  }

  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    return after_sync(fs_.failing() ? fs_.refuse() : target()->Sync(options, dbg));
  }

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    return after_sync(fs_.failing() ? fs_.refuse() : target()->Fsync(options, dbg));
  }

  rocksdb::IOStatus Close(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    // Closing writes nothing new; the file handle must go either way.
    return target()->Close(options, dbg);
  }

 private:
  rocksdb::IOStatus after_sync(rocksdb::IOStatus s) {
    if (s.ok()) {
      fs_.synced(name_);
    }
    return s;
  }

  DropUnsyncedFs& fs_;
  std::string name_;
};

}  // namespace

DropUnsyncedFs::DropUnsyncedFs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}

rocksdb::IOStatus DropUnsyncedFs::refuse() noexcept {
  refused_.fetch_add(1, std::memory_order_relaxed);
  if (power_off()) {
    return rocksdb::IOStatus::IOError("power is off");
  }
  if (io_errors_.load(std::memory_order_relaxed) == IoErrors::kNoSpace) {
    // As RocksDB's own POSIX file system reports ENOSPC: retryable.
    auto s = rocksdb::IOStatus::NoSpace("injected: no space left on device (ENOSPC)");
    s.SetRetryable(true);
    return s;
  }
  return rocksdb::IOStatus::IOError("injected: input/output error (EIO)");
}

rocksdb::IOStatus DropUnsyncedFs::NewWritableFile(const std::string& fname,
                                                  const rocksdb::FileOptions& options,
                                                  std::unique_ptr<rocksdb::FSWritableFile>* result,
                                                  rocksdb::IODebugContext* dbg) {
  if (failing()) {
    return refuse();
  }
  std::unique_ptr<rocksdb::FSWritableFile> file;
  auto s = target()->NewWritableFile(fname, options, &file, dbg);
  if (!s.ok()) {
    return s;
  }
  {
    std::lock_guard lock(mutex_);
    files_[fname] = Sizes{};
  }
  *result = std::make_unique<TrackedFile>(std::move(file), *this, fname);
  return s;
}

rocksdb::IOStatus DropUnsyncedFs::ReopenWritableFile(
    const std::string& fname,
    const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result,
    rocksdb::IODebugContext* dbg) {
  if (failing()) {
    return refuse();
  }
  std::unique_ptr<rocksdb::FSWritableFile> file;
  auto s = target()->ReopenWritableFile(fname, options, &file, dbg);
  if (!s.ok()) {
    return s;
  }
  {
    // What the file held before it was reopened is taken as durable.
    std::error_code ec;
    auto size = std::filesystem::file_size(fname, ec);
    std::lock_guard lock(mutex_);
    files_[fname] = Sizes{.written = ec ? 0 : size, .synced = ec ? 0 : size};
  }
  *result = std::make_unique<TrackedFile>(std::move(file), *this, fname);
  return s;
}

// A recycled WAL keeps its old bytes past the write position; RocksDB tells them apart by log
// number. Its synced size starts at zero, so a power cut keeps only what was synced since.
rocksdb::IOStatus DropUnsyncedFs::ReuseWritableFile(
    const std::string& fname,
    const std::string& old_fname,
    const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result,
    rocksdb::IODebugContext* dbg) {
  if (failing()) {
    return refuse();
  }
  std::unique_ptr<rocksdb::FSWritableFile> file;
  auto s = target()->ReuseWritableFile(fname, old_fname, options, &file, dbg);
  if (!s.ok()) {
    return s;
  }
  {
    std::lock_guard lock(mutex_);
    files_.erase(old_fname);
    files_[fname] = Sizes{};
  }
  *result = std::make_unique<TrackedFile>(std::move(file), *this, fname);
  return s;
}

rocksdb::IOStatus DropUnsyncedFs::RenameFile(const std::string& from,
                                             const std::string& to,
                                             const rocksdb::IOOptions& options,
                                             rocksdb::IODebugContext* dbg) {
  if (failing()) {
    return refuse();
  }
  auto s = target()->RenameFile(from, to, options, dbg);
  if (s.ok()) {
    std::lock_guard lock(mutex_);
    if (auto it = files_.find(from); it != files_.end()) {
      files_[to] = it->second;
      files_.erase(it);
    } else {
      files_.erase(to);
    }
  }
  return s;
}

rocksdb::IOStatus DropUnsyncedFs::DeleteFile(const std::string& fname,
                                             const rocksdb::IOOptions& options,
                                             rocksdb::IODebugContext* dbg) {
  if (failing()) {
    return refuse();
  }
  auto s = target()->DeleteFile(fname, options, dbg);
  if (s.ok()) {
    std::lock_guard lock(mutex_);
    files_.erase(fname);
  }
  return s;
}

void DropUnsyncedFs::appended(const std::string& fname, std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  files_[fname].written += bytes;
}

void DropUnsyncedFs::synced(const std::string& fname) {
  if (fname.ends_with(".log")) {
    wal_syncs_.fetch_add(1, std::memory_order_relaxed);
  }
  std::lock_guard lock(mutex_);
  auto& sizes = files_[fname];
  sizes.synced = sizes.written;
}

std::uint64_t DropUnsyncedFs::drop_unsynced() {
  std::lock_guard lock(mutex_);
  std::uint64_t dropped = 0;
  for (const auto& [name, sizes] : files_) {
    std::error_code ec;
    auto size = std::filesystem::file_size(name, ec);
    if (ec || size <= sizes.synced) {
      continue;
    }
    std::filesystem::resize_file(name, sizes.synced, ec);
    if (!ec) {
      dropped += size - sizes.synced;
    }
  }
  return dropped;
}

}  // namespace earnd::reliability
