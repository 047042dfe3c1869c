#include "earnd/store/store.h"

#include <cstring>

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

namespace earnd::store {
namespace {

constexpr const char* kMeta = "meta";
constexpr const char* kClicks = "clicks";
constexpr const char* kVisitor = "visitor";
constexpr const char* kCounters = "counters";

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
  return make_error_code(Errc::kStorage);
}

void put_be(std::uint64_t v, int bytes, std::string& out) {
  for (int i = bytes - 1; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

std::uint64_t get_le(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Sums fixed arrays of three little-endian u64 counters (clicks, unique, bot).
class CounterAddOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&,
             const rocksdb::Slice* existing,
             const rocksdb::Slice& value,
             std::string* new_value,
             rocksdb::Logger*) const override {
    std::uint64_t sum[3] = {0, 0, 0};
    add(existing, sum);
    add(&value, sum);
    new_value->assign(reinterpret_cast<const char*>(sum), sizeof(sum));
    return true;
  }

  const char* Name() const override { return "earnd.CounterAdd"; }

 private:
  static void add(const rocksdb::Slice* s, std::uint64_t* sum) {
    if (s == nullptr || s->size() != 24) {
      return;
    }
    for (int i = 0; i < 3; ++i) {
      sum[i] += get_le(s->data() + 8 * i);
    }
  }
};

std::string counter_key(std::string_view code, std::uint32_t day) {
  std::string k(code);
  k.push_back('\0');
  put_be(day, 4, k);
  return k;
}

rocksdb::ColumnFamilyOptions family_options(const std::shared_ptr<rocksdb::Cache>& cache,
                                            bool bloom,
                                            rocksdb::CompressionType compression) {
  rocksdb::ColumnFamilyOptions o;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = cache;
  if (bloom) {
    t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  }
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
  rocksdb::ColumnFamilyHandle* clicks = nullptr;
  rocksdb::ColumnFamilyHandle* visitor = nullptr;
  rocksdb::ColumnFamilyHandle* counters = nullptr;
};

struct Store::Impl {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  rocksdb::ColumnFamilyHandle* clicks = nullptr;
  rocksdb::ColumnFamilyHandle* visitor = nullptr;
  rocksdb::ColumnFamilyHandle* counters = nullptr;

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
  count_ = 0;
}

std::size_t ClickBatch::data_bytes() const noexcept { return impl_->wb.GetDataSize(); }

// Each click is three writes: the record by id, the visitor index entry (the reason byte, so
// matching can skip non-human clicks without reading the record) and the link's day counters.
void ClickBatch::add(const ClickRecord& c) {
  Impl& i = *impl_;
  i.value.clear();
  encode_click(c, i.value);
  i.wb.Put(i.clicks, c.id.key(), i.value).PermitUncheckedError();

  i.key.clear();
  put_be(c.visitor_hash, 8, i.key);
  put_be(c.ts_ms, 8, i.key);
  i.key.append(c.id.key());
  char reason = static_cast<char>(c.reason);
  i.wb.Put(i.visitor, i.key, rocksdb::Slice(&reason, 1)).PermitUncheckedError();

  std::uint64_t add[3] = {1, c.unique ? 1u : 0u, c.reason == ClickReason::kHuman ? 0u : 1u};
  i.wb.Merge(i.counters, counter_key(c.code, day_of(c.ts_ms)),
             rocksdb::Slice(reinterpret_cast<const char*>(add), sizeof(add)))
      .PermitUncheckedError();
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

  auto cache = rocksdb::NewLRUCache(std::size_t{options.block_cache_mb} << 20);
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  families.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
  families.emplace_back(kMeta, family_options(cache, true, rocksdb::kNoCompression));
  families.emplace_back(kClicks, family_options(cache, true, rocksdb::kLZ4Compression));
  auto visitor = family_options(cache, true, rocksdb::kLZ4Compression);
  visitor.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(8));
  families.emplace_back(kVisitor, visitor);
  auto counters = family_options(cache, true, rocksdb::kLZ4Compression);
  counters.merge_operator = std::make_shared<CounterAddOperator>();
  families.emplace_back(kCounters, counters);

  auto impl = std::make_unique<Impl>();
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
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() = default;

ErrorCode Store::put_meta(std::string_view key, std::string_view value) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return to_error(impl_->db->Put(wo, impl_->meta, key, value));
}

ErrorCode Store::put_meta_many(const std::vector<std::pair<std::string, std::string>>& kv) {
  rocksdb::WriteBatch wb;
  for (const auto& [k, v] : kv) {
    wb.Put(impl_->meta, k, v);
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return to_error(impl_->db->Write(wo, &wb));
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
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->meta));
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
  return b;
}

ErrorCode Store::write_clicks(ClickBatch& batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return to_error(impl_->db->Write(wo, &batch.impl_->wb));
}

ErrorCode Store::sync_wal() { return to_error(impl_->db->SyncWAL()); }

Result<std::uint64_t> Store::scan_clicks(
    std::uint64_t from_ms,
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
    auto c = decode_click(*id, it->value().ToStringView());
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
  auto c = decode_click(id, value);
  if (!c) {
    return c.error();
  }
  return std::optional<ClickRecord>(std::move(*c));
}

Result<LinkDayCounts> Store::link_day_counts(std::string_view code, std::uint32_t day) const {
  std::string value;
  auto s = impl_->db->Get(rocksdb::ReadOptions(), impl_->counters, counter_key(code, day), &value);
  LinkDayCounts c;
  if (s.IsNotFound()) {
    return c;
  }
  if (!s.ok() || value.size() != 24) {
    return s.ok() ? make_error_code(Errc::kCorruptRecord) : to_error(s);
  }
  c.clicks = get_le(value.data());
  c.unique_clicks = get_le(value.data() + 8);
  c.bot_clicks = get_le(value.data() + 16);
  return c;
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

std::uint64_t Store::live_sst_bytes() const { return int_property("rocksdb.live-sst-files-size"); }

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

ErrorCode Store::probe_write() {
  rocksdb::WriteOptions wo;
  return to_error(impl_->db->Put(wo, impl_->meta, "z/probe", "1"));
}

}  // namespace earnd::store
