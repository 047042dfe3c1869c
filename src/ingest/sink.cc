#include "earnd/ingest/sink.h"

#include "earnd/store/store.h"

namespace earnd::ingest {

struct StoreSink::Impl {
  store::Store& store;
  store::ClickBatch batch;
};

StoreSink::StoreSink(store::Store& store)
    : impl_(std::make_unique<Impl>(Impl{store, store.make_click_batch()})) {}

StoreSink::~StoreSink() = default;

ErrorCode StoreSink::write(std::span<const ClickRecord> clicks, bool sync) {
  impl_->batch.clear();
  for (const auto& c : clicks) {
    impl_->batch.add(c);
  }
  auto ec = impl_->store.write_clicks(impl_->batch, sync);
  last_bytes_ = impl_->batch.data_bytes();  // complete only once written (counters are summed)
  return ec;
}

ErrorCode StoreSink::sync() {
  return impl_->store.sync_wal();
}

}  // namespace earnd::ingest
