#include "earnd/store/store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>

#include <boost/unordered/unordered_flat_map.hpp>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "click_format.h"
#include "earnd/common/money.h"
#include "earnd/log/log.h"

namespace earnd::store {
namespace {

using detail::get_be;
using detail::put_be;

constexpr const char* kMeta = "meta";
constexpr const char* kClicks = "clicks";
constexpr const char* kVisitor = "visitor";
constexpr const char* kCounters = "counters";
constexpr const char* kDocs = "docs";
constexpr const char* kStats = "stats";

ErrorCode to_error(const rocksdb::Status& s) {
  if (s.ok()) {
    return {};
  }
  if (s.IsNotFound()) {
    return make_error_code(Errc::kNotFound);
  }
  if (s.IsCorruption()) {
    return make_error_code(Errc::kCorruptRecord);
  }
  if (s.IsNoSpace()) {
    return make_error_code(Errc::kNoSpace);
  }
  return make_error_code(Errc::kStorage);
}

std::uint64_t get_le(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Adds arrays of little-endian 64-bit counters element by element; the shorter array counts as
// zeros past its end, so a counter added to the end of a layout later merges with old values.
class CounterAddOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&,
             const rocksdb::Slice* existing,
             const rocksdb::Slice& value,
             std::string* new_value,
             rocksdb::Logger*) const override {
    std::size_t n = std::max(existing ? existing->size() / 8 : 0, value.size() / 8);
    std::vector<std::uint64_t> sum(n, 0);
    add(existing, sum);
    add(&value, sum);
    new_value->assign(reinterpret_cast<const char*>(sum.data()), n * 8);
    return true;
  }

  const char* Name() const override { return "earnd.CounterAdd"; }

 private:
  static void add(const rocksdb::Slice* s, std::vector<std::uint64_t>& sum) {
    if (s == nullptr) {
      return;
    }
    // The counters are signed; a sum out of range is held at the end of the range, so a merge
    // never wraps a total around to the other sign.
    for (std::size_t i = 0; i < s->size() / 8 && i < sum.size(); ++i) {
      auto add = static_cast<std::int64_t>(get_le(s->data() + 8 * i));
      sum[i] = static_cast<std::uint64_t>(saturating_add(static_cast<std::int64_t>(sum[i]), add));
    }
  }
};

// The visitor index's entries (format 3) are keyed by visitor and time only, so two clicks of
// one visitor in the same millisecond share a key: each click adds its reason byte and
// dictionary number as an operand, and the operands are concatenated.
class AppendOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&,
             const rocksdb::Slice* existing,
             const rocksdb::Slice& value,
             std::string* new_value,
             rocksdb::Logger*) const override {
    new_value->clear();
    if (existing != nullptr) {
      new_value->reserve(existing->size() + value.size());
      new_value->append(existing->data(), existing->size());
    }
    new_value->append(value.data(), value.size());
    return true;
  }

  const char* Name() const override { return "earnd.VisitorAppend"; }
};

std::string counter_key(std::string_view code, std::uint32_t bucket) {
  std::string k(code);
  k.push_back('\0');
  put_be(bucket, 4, k);
  return k;
}

void put_short(std::string_view s, std::string& out) {
  std::size_t n = std::min<std::size_t>(s.size(), 255);
  out.push_back(static_cast<char>(n));
  out.append(s.data(), n);
}

bool get_short(std::string_view& in, std::string_view& out) {
  if (in.empty() || in.size() < 1u + static_cast<unsigned char>(in[0])) {
    return false;
  }
  std::size_t n = static_cast<unsigned char>(in[0]);
  out = in.substr(1, n);
  in.remove_prefix(1 + n);
  return true;
}

// How a family is read, which decides its table options.
struct TableShape {
  bool bloom = true;
  // Point reads by whole key (false for the visitor index: only prefix seeks, whose bloom
  // filter is built from the prefix extractor; whole keys in it would cost a byte per click).
  bool whole_key_filtering = true;
  // Clicks and the visitor index hold one small entry per click; bigger blocks compress their
  // keys and values better (docs/storage.md).
  std::size_t block_size = 4096;
};

rocksdb::ColumnFamilyOptions family_options(const std::shared_ptr<rocksdb::Cache>& cache,
                                            TableShape shape,
                                            rocksdb::CompressionType compression) {
  rocksdb::ColumnFamilyOptions o;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = cache;
  if (shape.bloom) {
    t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  }
  t.whole_key_filtering = shape.whole_key_filtering;
  t.block_size = shape.block_size;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  o.compression = compression;
  o.bottommost_compression = rocksdb::kZSTD;
  return o;
}

}  // namespace

struct ClickBatch::Impl {
  rocksdb::WriteBatch wb;
  std::string key;
  std::string value;
  std::string text;
  rocksdb::ColumnFamilyHandle* clicks = nullptr;
  rocksdb::ColumnFamilyHandle* visitor = nullptr;
  rocksdb::ColumnFamilyHandle* counters = nullptr;
  detail::LinkDictionary* dict = nullptr;
  // Dictionary numbers this batch names that were not known to be stored when it named them;
  // Store::write_clicks writes their entries with the batch.
  std::vector<std::uint32_t> unstored_numbers;
  // The day counters of the batch's clicks, summed per counter key and written as one merge
  // operand each when the batch is written: a batch of many clicks on a few links adds a few
  // memtable entries instead of one per click.
  boost::unordered_flat_map<std::string, std::array<std::uint64_t, 3>> pending_counters;

  void emit_counters() {
    for (const auto& [key, add] : pending_counters) {
      wb.Merge(counters, key,
               rocksdb::Slice(reinterpret_cast<const char*>(add.data()), sizeof(add)))
          .PermitUncheckedError();
    }
    pending_counters.clear();
  }
};

struct Store::Impl {
  std::unique_ptr<rocksdb::Env> env;  // only with a custom file system; outlives db
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  rocksdb::ColumnFamilyHandle* clicks = nullptr;
  rocksdb::ColumnFamilyHandle* visitor = nullptr;
  rocksdb::ColumnFamilyHandle* counters = nullptr;
  rocksdb::ColumnFamilyHandle* docs = nullptr;
  rocksdb::ColumnFamilyHandle* stats = nullptr;
  bool bulk = false;
  detail::LinkDictionary dict;
  std::string data_dir;
  std::uint64_t min_free_bytes = 0;

  // True while free space is below the reserve. One statvfs per write call (a batch of clicks,
  // a conversion batch, an admin write): about a microsecond, next to a millisecond's fsync.
  // LIMIT: another process can still fill the disk between this check and RocksDB's write;
  // the WAL's preallocated space usually absorbs that one batch.
  bool out_of_space() const {
    if (min_free_bytes == 0) {
      return false;
    }

    struct statvfs st {};

    if (::statvfs(data_dir.c_str(), &st) != 0) {
      return false;  // cannot tell; let RocksDB try
    }
    return std::uint64_t{st.f_bavail} * st.f_frsize < min_free_bytes;
  }

  // Set by a failed write, cleared by a successful one; see sync_wal().
  std::atomic<bool> write_failed{false};

  // Set for good by a write error RocksDB deems fatal; see Store::needs_restart().
  std::atomic<bool> fatal{false};

  ErrorCode written(const rocksdb::Status& s) {
    write_failed.store(!s.ok(), std::memory_order_relaxed);
    if (!s.ok() && s.severity() >= rocksdb::Status::Severity::kFatalError &&
        !fatal.exchange(true, std::memory_order_relaxed)) {
      log::get("store")->error(
          "event=storage_fatal error=\"{}\" data_dir=\"{}\" action=\"writes are refused "
          "until earnd is restarted; acknowledged data is in the write-ahead log\"",
          s.ToString(), data_dir);
    }
    return to_error(s);
  }

  ~Impl() {
    for (auto* h : handles) {
      if (db) {
        db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
      }
    }
    if (db) {
      db->Close().PermitUncheckedError();
    }
  }
};

ClickBatch::ClickBatch() : impl_(std::make_unique<Impl>()) {}

ClickBatch::~ClickBatch() = default;
ClickBatch::ClickBatch(ClickBatch&&) noexcept = default;
ClickBatch& ClickBatch::operator=(ClickBatch&&) noexcept = default;

void ClickBatch::clear() {
  impl_->wb.Clear();
  impl_->pending_counters.clear();
  impl_->unstored_numbers.clear();
  count_ = 0;
}

std::size_t ClickBatch::data_bytes() const noexcept {
  return impl_->wb.GetDataSize();
}

// Each click is three writes: the record by id, the visitor index entry (the reason and the
// dictionary number, so matching can skip non-human clicks and filter by program without
// reading the record) and the link's day counters. Layouts: docs/storage.md.
void ClickBatch::add(const ClickRecord& c) {
  Impl& i = *impl_;
  i.text.clear();
  i.text.append(c.program).push_back('\0');
  i.text.append(c.referrer_id).push_back('\0');
  i.text.append(c.code);
  auto [number, unstored] = i.dict->number_for(i.text);
  if (unstored && std::find(i.unstored_numbers.begin(), i.unstored_numbers.end(), number) ==
                      i.unstored_numbers.end()) {
    i.unstored_numbers.push_back(number);
  }

  i.value.clear();
  detail::encode_click_v2(c, number, i.value);
  i.wb.Put(i.clicks, c.id.key(), i.value).PermitUncheckedError();

  i.key.clear();
  put_be(c.visitor_hash, 8, i.key);
  put_be(c.ts_ms, 8, i.key);
  i.value.clear();
  i.value.push_back(static_cast<char>(c.reason));
  if (c.ts_ms == c.id.ts_ms()) {
    // Format 3: the key holds no part of the id (its random bytes were a third of the bytes a
    // click took on disk); the id is found again in the clicks family, whose keys begin with
    // the same time, when a caller needs it.
    detail::put_varint(number, i.value);
    i.wb.Merge(i.visitor, i.key, i.value).PermitUncheckedError();
  } else {
    i.key.append(c.id.key());
    put_short(c.program, i.value);
    put_short(c.referrer_id, i.value);
    put_short(c.code, i.value);
    i.wb.Put(i.visitor, i.key, i.value).PermitUncheckedError();
  }

  auto& add = i.pending_counters[counter_key(c.code, bucket_of(c.ts_ms))];
  add[0] += 1;
  add[1] += c.unique ? 1u : 0u;
  add[2] += c.reason == ClickReason::kHuman ? 0u : 1u;
  ++count_;
}

std::unique_ptr<Store> Store::open(const StoreOptions& options) {
  rocksdb::DBOptions db;
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  db.max_background_jobs = 2;
  db.bytes_per_sync = 1 << 20;
  db.keep_log_file_num = 5;
  db.max_total_wal_size = 256ull << 20;
  // Reusing old WAL files means a sync overwrites blocks the file already has, so fdatasync
  // need not also commit a new file size: about half the latency per synced batch here (see
  // docs/benchmarks.md), and that latency is what a 302 waits for in group durability.
  db.recycle_log_file_num = options.recycle_wal_files;
  db.enable_pipelined_write = options.pipelined_write;

  auto cache = rocksdb::NewLRUCache(std::size_t{options.block_cache_mb} << 20);
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  const TableShape plain;
  const TableShape per_click{.block_size = 16 * 1024};
  families.emplace_back(kMeta, family_options(cache, plain, rocksdb::kNoCompression));
  auto clicks = family_options(cache, per_click, rocksdb::kLZ4Compression);
  // Point reads by id are conversions naming a click, which nearly always exists: no bloom
  // filter on the bottommost level, where most clicks live (1.1 of the ~40 bytes a click took;
  // docs/storage.md). A read of an id that does not exist costs one block read there instead.
  clicks.optimize_filters_for_hits = true;
  auto visitor =
      family_options(cache, {.whole_key_filtering = false, .block_size = per_click.block_size},
                     rocksdb::kLZ4Compression);
  visitor.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(8));
  visitor.merge_operator = std::make_shared<AppendOperator>();
  auto counters = family_options(cache, plain, rocksdb::kLZ4Compression);
  counters.merge_operator = std::make_shared<CounterAddOperator>();
  if (options.bulk_memtables) {
    // A skip-list insert of a random visitor key was two thirds of an import's CPU (perf, see
    // docs/benchmarks.md); a vector memtable appends and sorts once per flush. Click ids come
    // in time order, which the skip list inserts cheaply, so the clicks family keeps it.
    db.allow_concurrent_memtable_write = false;
    for (auto* o : {&visitor, &counters}) {
      o->memtable_factory = std::make_shared<rocksdb::VectorRepFactory>();
      o->write_buffer_size = 128ull << 20;
    }
  }
  families.emplace_back(kClicks, clicks);
  families.emplace_back(kVisitor, visitor);
  families.emplace_back(kCounters, counters);
  families.emplace_back(kDocs, family_options(cache, plain, rocksdb::kLZ4Compression));
  auto stats = family_options(cache, plain, rocksdb::kLZ4Compression);
  stats.merge_operator = std::make_shared<CounterAddOperator>();
  families.emplace_back(kStats, stats);

  auto impl = std::make_unique<Impl>();
  impl->data_dir = options.data_dir;
  impl->min_free_bytes = options.min_free_bytes;
  if (options.file_system) {
    impl->env = rocksdb::NewCompositeEnv(options.file_system);
    db.env = impl->env.get();
  }
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s;
  if (options.mode == OpenMode::kReadOnly) {
    s = rocksdb::DB::OpenForReadOnly(db, options.data_dir, families, &impl->handles, &raw);
  } else {
    s = rocksdb::DB::Open(db, options.data_dir, families, &impl->handles, &raw);
  }
  if (!s.ok()) {
    throw StartupError("store: cannot open " + options.data_dir + ": " + s.ToString());
  }
  impl->db.reset(raw);
  impl->meta = impl->handles[1];
  impl->clicks = impl->handles[2];
  impl->visitor = impl->handles[3];
  impl->counters = impl->handles[4];
  impl->docs = impl->handles[5];
  impl->stats = impl->handles[6];
  {
    std::unique_ptr<rocksdb::Iterator> it(
        impl->db->NewIterator(rocksdb::ReadOptions(), impl->meta));
    const auto prefix = detail::LinkDictionary::kPrefix;
    for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size()));
         it->Valid() && it->key().starts_with(rocksdb::Slice(prefix.data(), prefix.size()));
         it->Next()) {
      if (!impl->dict.load(it->key().ToStringView(), it->value().ToStringView())) {
        throw StartupError("store: corrupt link dictionary entry in " + options.data_dir);
      }
    }
    if (!it->status().ok()) {
      throw StartupError("store: cannot read " + options.data_dir + ": " + it->status().ToString());
    }
  }
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() = default;

ErrorCode Store::put_meta(std::string_view key, std::string_view value) {
  if (impl_->out_of_space()) {
    return make_error_code(Errc::kNoSpace);
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return impl_->written(impl_->db->Put(wo, impl_->meta, key, value));
}

ErrorCode Store::put_meta_many(const std::vector<std::pair<std::string, std::string>>& kv) {
  if (impl_->out_of_space()) {
    return make_error_code(Errc::kNoSpace);
  }
  rocksdb::WriteBatch wb;
  for (const auto& [k, v] : kv) {
    wb.Put(impl_->meta, k, v);
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return impl_->written(impl_->db->Write(wo, &wb));
}

Result<std::optional<std::string>> Store::get_meta(std::string_view key) const {
  std::string value;
  auto s = impl_->db->Get(rocksdb::ReadOptions(), impl_->meta, key, &value);
  if (s.IsNotFound()) {
    return std::optional<std::string>();
  }
  if (!s.ok()) {
    return to_error(s);
  }
  return std::optional<std::string>(std::move(value));
}

void Store::scan_meta(std::string_view prefix,
                      const std::function<bool(std::string_view, std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (!fn(it->key().ToStringView(), it->value().ToStringView())) {
      break;
    }
  }
}

ClickBatch Store::make_click_batch() const {
  ClickBatch b;
  b.impl_->clicks = impl_->clicks;
  b.impl_->visitor = impl_->visitor;
  b.impl_->counters = impl_->counters;
  b.impl_->dict = &impl_->dict;
  return b;
}

ErrorCode Store::write_clicks(ClickBatch& batch, bool sync) {
  if (impl_->out_of_space()) {
    return make_error_code(Errc::kNoSpace);
  }
  auto& b = *batch.impl_;
  b.emit_counters();
  if (!b.unstored_numbers.empty()) {
    // The dictionary entries go into the clicks' own atomic write. Without the WAL (bulk load)
    // the families are flushed separately, so the entries are written and synced first instead:
    // an entry no click names is harmless, a click naming a missing entry would be corrupt.
    rocksdb::WriteBatch entries;
    rocksdb::WriteBatch& target = impl_->bulk ? entries : b.wb;
    for (std::uint32_t n : b.unstored_numbers) {
      const auto* e = impl_->dict.find(n);
      target.Put(impl_->meta, detail::LinkDictionary::key(n), e->text).PermitUncheckedError();
    }
    if (impl_->bulk) {
      rocksdb::WriteOptions synced;
      synced.sync = true;
      if (auto ec = impl_->written(impl_->db->Write(synced, &entries))) {
        return ec;
      }
    }
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync && !impl_->bulk;
  wo.disableWAL = impl_->bulk;
  auto ec = impl_->written(impl_->db->Write(wo, &b.wb));
  if (!ec) {
    for (std::uint32_t n : b.unstored_numbers) {
      impl_->dict.mark_durable(n);
    }
  }
  return ec;
}

// After a failed write RocksDB's WAL writer keeps the error, and a sync of that writer trips an
// assertion in Debian's librocksdb (built with assertions on), ending the process. Until a write
// succeeds again (on a new WAL once RocksDB has recovered) a sync could make nothing durable,
// so it is not attempted.
// LIMIT: a write failing on another thread between the check and the sync can still reach that
// assertion; the writer thread is the only caller and its own writes set the flag first.
ErrorCode Store::sync_wal() {
  if (impl_->write_failed.load(std::memory_order_relaxed)) {
    return make_error_code(Errc::kStorage);
  }
  return to_error(impl_->db->SyncWAL());
}

Result<std::uint64_t> Store::scan_clicks(std::uint64_t from_ms,
                                         std::uint64_t to_ms,
                                         const std::function<bool(const ClickRecord&)>& fn) const {
  std::string start;
  put_be(from_ms, 6, start);
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->clicks));
  std::uint64_t corrupt = 0;
  for (it->Seek(start); it->Valid(); it->Next()) {
    auto id = ClickId::from_key(it->key().ToStringView());
    if (!id) {
      ++corrupt;
      continue;
    }
    if (id->ts_ms() >= to_ms) {
      break;
    }
    auto c = detail::decode_stored_click(*id, it->value().ToStringView(), impl_->dict);
    if (!c) {
      ++corrupt;
      continue;
    }
    if (!fn(*c)) {
      break;
    }
  }
  if (!it->status().ok()) {
    return to_error(it->status());
  }
  return corrupt;
}

Result<std::optional<ClickRecord>> Store::get_click(const ClickId& id) const {
  std::string value;
  auto s = impl_->db->Get(rocksdb::ReadOptions(), impl_->clicks, id.key(), &value);
  if (s.IsNotFound()) {
    return std::optional<ClickRecord>();
  }
  if (!s.ok()) {
    return to_error(s);
  }
  auto c = detail::decode_stored_click(id, value, impl_->dict);
  if (!c) {
    return c.error();
  }
  return std::optional<ClickRecord>(std::move(*c));
}

Result<LinkDayCounts> Store::link_day_counts(std::string_view code, std::uint32_t day) const {
  LinkDayCounts total;
  std::uint32_t per_day = static_cast<std::uint32_t>(86'400'000 / kBucketMs);
  auto ec = scan_link_buckets(code, day * per_day, (day + 1) * per_day,
                              [&](std::uint32_t, const LinkDayCounts& c) {
                                total.clicks += c.clicks;
                                total.unique_clicks += c.unique_clicks;
                                total.bot_clicks += c.bot_clicks;
                              });
  if (ec) {
    return ec;
  }
  return total;
}

ErrorCode Store::scan_link_buckets(
    std::string_view code,
    std::uint32_t from_bucket,
    std::uint32_t to_bucket,
    const std::function<void(std::uint32_t, const LinkDayCounts&)>& fn) const {
  std::string start = counter_key(code, from_bucket);
  std::string prefix = start.substr(0, code.size() + 1);
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->counters));
  for (it->Seek(start); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (it->key().size() != prefix.size() + 4) {
      continue;
    }
    auto bucket = static_cast<std::uint32_t>(get_be(it->key().data() + prefix.size(), 4));
    if (bucket >= to_bucket) {
      break;
    }
    auto v = it->value();
    if (v.size() != 24) {
      continue;
    }
    fn(bucket, LinkDayCounts{get_le(v.data()), get_le(v.data() + 8), get_le(v.data() + 16)});
  }
  return to_error(it->status());
}

ErrorCode Store::scan_visitor(std::uint64_t visitor_hash,
                              std::uint64_t from_ms,
                              std::uint64_t to_ms,
                              const std::function<bool(const VisitorClick&)>& fn) const {
  std::string start;
  put_be(visitor_hash, 8, start);
  std::string prefix = start;
  put_be(from_ms, 8, start);
  rocksdb::ReadOptions ro;
  ro.prefix_same_as_start = true;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->visitor));
  for (it->Seek(start); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto key = it->key();
    // Format 3 keys are visitor and time only, and their values list one (reason, dictionary
    // number) per click at that time. Format 2 keys end in the id after its 6 time bytes, which
    // equal ts_ms; format 1 keys end in the whole id (and their values carry the text).
    bool format3 = key.size() == 16;
    bool format2 = key.size() == 16 + kClickIdBytes - 6;
    bool format1 = key.size() == 16 + kClickIdBytes;
    if (!format3 && !format2 && !format1) {
      continue;
    }
    VisitorClick vc;
    vc.ts_ms = get_be(key.data() + 8, 8);
    if (vc.ts_ms > to_ms) {
      break;
    }
    if (format2) {
      std::memcpy(vc.id.bytes.data(), key.data() + 10, 6);  // the low 6 bytes of ts_ms
      std::memcpy(vc.id.bytes.data() + 6, key.data() + 16, kClickIdBytes - 6);
    } else if (format1) {
      std::memcpy(vc.id.bytes.data(), key.data() + 16, kClickIdBytes);
    }
    vc.has_id = !format3;
    std::string_view v = it->value().ToStringView();
    bool more = true;
    while (more && !v.empty()) {
      if (static_cast<unsigned char>(v[0]) >= kReasonCount) {
        break;
      }
      vc.reason = static_cast<ClickReason>(v[0]);
      v.remove_prefix(1);
      if (format1) {
        if (!get_short(v, vc.program) || !get_short(v, vc.referrer_id) || !get_short(v, vc.code)) {
          break;
        }
        v = {};
      } else {
        std::uint32_t number = 0;
        const detail::LinkDictionary::Entry* e = nullptr;
        if (!detail::get_varint(v, number) || (e = impl_->dict.find(number)) == nullptr) {
          break;
        }
        vc.program = e->program;
        vc.referrer_id = e->referrer_id;
        vc.code = e->code;
        if (format2) {
          v = {};
        }
      }
      more = fn(vc);
    }
    if (!more) {
      break;
    }
  }
  return to_error(it->status());
}

ErrorCode Store::clicks_at(std::uint64_t visitor_hash,
                           std::uint64_t ts_ms,
                           const std::function<bool(const ClickRecord&)>& fn) const {
  return clicks_at(visitor_hash, std::span<const std::uint64_t>(&ts_ms, 1), fn);
}

ErrorCode Store::clicks_at(std::uint64_t visitor_hash,
                           std::span<const std::uint64_t> times,
                           const std::function<bool(const ClickRecord&)>& fn) const {
  // Click ids begin with their 6-byte time: the clicks of one millisecond are one key range.
  // One iterator for all the times (creating one costs more than a seek).
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->clicks));
  std::string prefix;
  for (std::uint64_t ts_ms : times) {
    prefix.clear();
    put_be(ts_ms, 6, prefix);
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      auto id = ClickId::from_key(it->key().ToStringView());
      if (!id || detail::stored_visitor_hash(it->value().ToStringView()) != visitor_hash) {
        continue;  // other visitors' clicks of the millisecond are skipped without decoding
      }
      auto c = detail::decode_stored_click(*id, it->value().ToStringView(), impl_->dict);
      if (!c || c->visitor_hash != visitor_hash || c->ts_ms != ts_ms) {
        continue;
      }
      if (!fn(*c)) {
        return to_error(it->status());
      }
    }
    if (!it->status().ok()) {
      break;
    }
  }
  return to_error(it->status());
}

Result<std::optional<std::string>> Store::get_doc(std::string_view key) const {
  std::string value;
  auto s = impl_->db->Get(rocksdb::ReadOptions(), impl_->docs, key, &value);
  if (s.IsNotFound()) {
    return std::optional<std::string>();
  }
  if (!s.ok()) {
    return to_error(s);
  }
  return std::optional<std::string>(std::move(value));
}

ErrorCode Store::write_docs(const std::vector<std::pair<std::string, std::string>>& kv, bool sync) {
  if (impl_->out_of_space()) {
    return make_error_code(Errc::kNoSpace);
  }
  rocksdb::WriteBatch wb;
  for (const auto& [k, v] : kv) {
    wb.Put(impl_->docs, k, v).PermitUncheckedError();
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return impl_->written(impl_->db->Write(wo, &wb));
}

ErrorCode Store::write(const DocBatch& batch, bool sync) {
  if (impl_->out_of_space()) {
    return make_error_code(Errc::kNoSpace);
  }
  rocksdb::WriteBatch wb;
  for (const auto& [k, v] : batch.puts) {
    wb.Put(impl_->docs, k, v).PermitUncheckedError();
  }
  for (const auto& k : batch.deletes) {
    wb.Delete(impl_->docs, k).PermitUncheckedError();
  }
  std::string value;
  for (const auto& [k, counters] : batch.stat_adds) {
    value.clear();
    for (std::int64_t c : counters) {
      auto u = static_cast<std::uint64_t>(c);
      value.append(reinterpret_cast<const char*>(&u), 8);
    }
    wb.Merge(impl_->stats, k, value).PermitUncheckedError();
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return impl_->written(impl_->db->Write(wo, &wb));
}

ErrorCode Store::scan_stats(
    std::string_view prefix,
    std::uint32_t from_bucket,
    std::uint32_t to_bucket,
    const std::function<void(std::uint32_t, const std::vector<std::int64_t>&)>& fn) const {
  std::string start(prefix);
  put_be(from_bucket, 4, start);
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->stats));
  std::vector<std::int64_t> counters;
  for (it->Seek(start); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (it->key().size() != prefix.size() + 4) {
      continue;
    }
    auto bucket = static_cast<std::uint32_t>(get_be(it->key().data() + prefix.size(), 4));
    if (bucket >= to_bucket) {
      break;
    }
    auto v = it->value();
    counters.assign(v.size() / 8, 0);
    for (std::size_t i = 0; i < counters.size(); ++i) {
      counters[i] = static_cast<std::int64_t>(get_le(v.data() + 8 * i));
    }
    fn(bucket, counters);
  }
  return to_error(it->status());
}

void Store::scan_docs(std::string_view prefix,
                      const std::function<bool(std::string_view, std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->docs));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    if (!fn(it->key().ToStringView(), it->value().ToStringView())) {
      break;
    }
  }
}

std::string Store::load_or_create_secret(std::string_view name) {
  std::string key = "s/" + std::string(name);
  auto stored = get_meta(key);
  if (stored && *stored) {
    return **stored;
  }
  unsigned char raw[32];
  std::string secret;
  {
    // 32 bytes from the click id generator's source would do, but a secret deserves its own
    // call to the system's generator.
    std::FILE* f = std::fopen("/dev/urandom", "rb");
    if (f == nullptr || std::fread(raw, 1, sizeof(raw), f) != sizeof(raw)) {
      if (f != nullptr) {
        std::fclose(f);
      }
      throw StartupError("store: cannot read /dev/urandom for a new secret");
    }
    std::fclose(f);
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char b : raw) {
      secret.push_back(kHex[b >> 4]);
      secret.push_back(kHex[b & 15]);
    }
  }
  if (put_meta(key, secret)) {
    throw StartupError("store: cannot save the new secret " + std::string(name));
  }
  return secret;
}

void Store::set_bulk_load(bool on) noexcept {
  impl_->bulk = on;
}

ErrorCode Store::flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return to_error(impl_->db->Flush(fo, impl_->handles));
}

std::uint64_t Store::int_property(std::string_view name) const {
  std::uint64_t total = 0;
  for (auto* h : impl_->handles) {
    std::uint64_t v = 0;
    if (impl_->db->GetIntProperty(h, rocksdb::Slice(name.data(), name.size()), &v)) {
      total += v;
    }
  }
  return total;
}

std::uint64_t Store::live_sst_bytes() const {
  return int_property("rocksdb.live-sst-files-size");
}

std::vector<std::pair<std::string, std::uint64_t>> Store::family_sst_bytes() const {
  std::vector<std::pair<std::string, std::uint64_t>> out;
  for (auto* h : impl_->handles) {
    std::uint64_t v = 0;
    impl_->db->GetIntProperty(h, "rocksdb.live-sst-files-size", &v);
    out.emplace_back(h->GetName(), v);
  }
  return out;
}

ErrorCode Store::compact_all() {
  rocksdb::CompactRangeOptions o;
  o.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (auto* h : impl_->handles) {
    auto s = impl_->db->CompactRange(o, h, nullptr, nullptr);
    if (!s.ok()) {
      return to_error(s);
    }
  }
  return {};
}

bool Store::needs_restart() const noexcept {
  return impl_->fatal.load(std::memory_order_relaxed);
}

ErrorCode Store::probe_write() {
  if (impl_->out_of_space()) {
    return make_error_code(Errc::kNoSpace);
  }
  rocksdb::WriteOptions wo;
  return impl_->written(impl_->db->Put(wo, impl_->meta, "z/probe", "1"));
}

}  // namespace earnd::store
