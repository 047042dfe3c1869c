#include "earnd/store/store.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "click_format.h"  // the store module's private codec
#include "earnd/common/click.h"
#include "earnd/common/click_id.h"
#include "earnd/common/error.h"

namespace earnd::store {
namespace {

// 2023-11-14, a fixed day for the counters.
constexpr std::uint64_t kDayStartMs = 19'675ULL * 86'400'000ULL;

// Gives each test its own RocksDB directory, removed afterwards.
class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "earnd_store_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    store_ = open(OpenMode::kReadWrite);
  }

  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<Store> open(OpenMode mode) const {
    return Store::open({.data_dir = dir_, .mode = mode, .block_cache_mb = 8});
  }

  static ClickRecord click(std::uint64_t ts_ms, std::string code = "summer24") {
    ClickRecord c;
    c.id = make_click_id(ts_ms, 3);
    c.ts_ms = ts_ms;
    c.visitor_hash = 0xabcdef0000000000ULL + ts_ms;
    c.program = "acme";
    c.referrer_id = "rf_1";
    c.code = std::move(code);
    c.referer_host = "news.example.org";
    return c;
  }

  // Writes the clicks as one synced batch.
  void write(const std::vector<ClickRecord>& clicks, Store& store) {
    ClickBatch batch = store.make_click_batch();
    for (const auto& c : clicks) {
      batch.add(c);
    }
    ASSERT_FALSE(store.write_clicks(batch, true));
  }

  void write(const std::vector<ClickRecord>& clicks) { write(clicks, *store_); }

  // The id of the one click of visitor at ts_ms, read back from the clicks family.
  ClickId id_at(std::uint64_t visitor, std::uint64_t ts_ms) const {
    std::vector<ClickId> ids;
    EXPECT_FALSE(store_->clicks_at(visitor, ts_ms, [&](const ClickRecord& r) {
      ids.push_back(r.id);
      return true;
    }));
    EXPECT_EQ(ids.size(), 1u);
    return ids.empty() ? ClickId{} : ids.front();
  }

  static std::vector<std::uint64_t> scanned_times(const Store& store,
                                                  std::uint64_t from_ms,
                                                  std::uint64_t to_ms) {
    std::vector<std::uint64_t> times;
    Result<std::uint64_t> corrupt = store.scan_clicks(from_ms, to_ms, [&](const ClickRecord& c) {
      times.push_back(c.ts_ms);
      return true;
    });
    EXPECT_TRUE(corrupt.has_value());
    EXPECT_EQ(corrupt.has_value() ? *corrupt : 99, 0u);
    return times;
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, PutsAndGetsMeta) {
  ASSERT_FALSE(store_->put_meta("p/acme", R"({"id":"acme"})"));

  Result<std::optional<std::string>> got = store_->get_meta("p/acme");
  Result<std::optional<std::string>> missing = store_->get_meta("p/none");

  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, std::optional<std::string>(R"({"id":"acme"})"));
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(StoreTest, OverwritesMeta) {
  ASSERT_FALSE(store_->put_meta("k", "one"));
  ASSERT_FALSE(store_->put_meta("k", "two"));

  EXPECT_EQ(*store_->get_meta("k"), std::optional<std::string>("two"));
}

TEST_F(StoreTest, ScansMetaByPrefixInKeyOrder) {
  ASSERT_FALSE(store_->put_meta_many({{"p/b", "2"}, {"r/x", "9"}, {"p/a", "1"}, {"p", "0"}}));
  ASSERT_FALSE(store_->put_meta("p/c", "3"));

  std::vector<std::pair<std::string, std::string>> seen;
  store_->scan_meta("p/", [&](std::string_view k, std::string_view v) {
    seen.emplace_back(k, v);
    return true;
  });

  std::vector<std::pair<std::string, std::string>> expected = {
      {"p/a", "1"}, {"p/b", "2"}, {"p/c", "3"}};
  EXPECT_EQ(seen, expected);
}

TEST_F(StoreTest, ScanMetaStopsWhenCallbackReturnsFalse) {
  ASSERT_FALSE(store_->put_meta_many({{"l/a", "1"}, {"l/b", "2"}, {"l/c", "3"}}));

  int calls = 0;
  store_->scan_meta("l/", [&](std::string_view, std::string_view) { return ++calls < 2; });

  EXPECT_EQ(calls, 2);
}

TEST_F(StoreTest, ScansClicksOldestFirst) {
  write({click(kDayStartMs + 50), click(kDayStartMs + 10), click(kDayStartMs + 30)});
  write({click(kDayStartMs + 20), click(kDayStartMs + 40)});

  EXPECT_EQ(scanned_times(*store_, 0, UINT64_MAX),
            (std::vector<std::uint64_t>{kDayStartMs + 10, kDayStartMs + 20, kDayStartMs + 30,
                                        kDayStartMs + 40, kDayStartMs + 50}));
}

TEST_F(StoreTest, ScanClicksHonoursHalfOpenBounds) {
  write({click(kDayStartMs + 10), click(kDayStartMs + 20), click(kDayStartMs + 30),
         click(kDayStartMs + 40)});

  EXPECT_EQ(scanned_times(*store_, kDayStartMs + 20, kDayStartMs + 40),
            (std::vector<std::uint64_t>{kDayStartMs + 20, kDayStartMs + 30}));
  EXPECT_EQ(scanned_times(*store_, kDayStartMs + 11, kDayStartMs + 21),
            (std::vector<std::uint64_t>{kDayStartMs + 20}));
  EXPECT_TRUE(scanned_times(*store_, kDayStartMs + 41, UINT64_MAX).empty());
  EXPECT_TRUE(scanned_times(*store_, 0, kDayStartMs + 10).empty());
}

TEST_F(StoreTest, ScanClicksStopsWhenCallbackReturnsFalse) {
  write({click(kDayStartMs + 1), click(kDayStartMs + 2), click(kDayStartMs + 3)});

  int calls = 0;
  Result<std::uint64_t> r =
      store_->scan_clicks(0, UINT64_MAX, [&](const ClickRecord&) { return ++calls < 2; });

  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(calls, 2);
}

TEST_F(StoreTest, GetsClickWithEveryField) {
  ClickRecord c = click(kDayStartMs + 5);
  c.unique = false;
  c.reason = ClickReason::kPreview;
  write({c, click(kDayStartMs + 6)});

  Result<std::optional<ClickRecord>> got = store_->get_click(c.id);
  Result<std::optional<ClickRecord>> missing = store_->get_click(make_click_id(kDayStartMs, 3));

  ASSERT_TRUE(got.has_value() && got->has_value());
  const ClickRecord& g = **got;
  EXPECT_EQ(g.id, c.id);
  EXPECT_EQ(g.ts_ms, c.ts_ms);
  EXPECT_EQ(g.visitor_hash, c.visitor_hash);
  EXPECT_EQ(g.program, "acme");
  EXPECT_EQ(g.referrer_id, "rf_1");
  EXPECT_EQ(g.code, "summer24");
  EXPECT_EQ(g.referer_host, "news.example.org");
  EXPECT_FALSE(g.unique);
  EXPECT_EQ(g.reason, ClickReason::kPreview);
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(StoreTest, ClickBatchCountsAndClears) {
  ClickBatch batch = store_->make_click_batch();
  batch.add(click(kDayStartMs + 1));
  batch.add(click(kDayStartMs + 2));
  std::size_t bytes = batch.data_bytes();

  EXPECT_EQ(batch.count(), 2u);
  batch.clear();
  EXPECT_EQ(batch.count(), 0u);
  EXPECT_LT(batch.data_bytes(), bytes);

  ASSERT_FALSE(store_->write_clicks(batch, true));
  EXPECT_TRUE(scanned_times(*store_, 0, UINT64_MAX).empty());
}

// Three batches for one link on one day: 6 clicks, 4 unique, 2 not human.
TEST_F(StoreTest, SumsLinkDayCountsAcrossBatches) {
  ClickRecord bot = click(kDayStartMs + 3);
  bot.reason = ClickReason::kBotUa;
  ClickRecord repeat = click(kDayStartMs + 4);
  repeat.unique = false;
  ClickRecord fast = click(kDayStartMs + 5);
  fast.unique = false;
  fast.reason = ClickReason::kVelocity;

  write({click(kDayStartMs + 1), click(kDayStartMs + 2)});
  write({bot, repeat});
  write({fast, click(kDayStartMs + 6)});
  write({click(kDayStartMs + 86'400'000), click(kDayStartMs + 7, "other")});

  Result<LinkDayCounts> c = store_->link_day_counts("summer24", day_of(kDayStartMs));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->clicks, 6u);
  EXPECT_EQ(c->unique_clicks, 4u);
  EXPECT_EQ(c->bot_clicks, 2u);
  EXPECT_EQ(store_->link_day_counts("summer24", day_of(kDayStartMs) + 1)->clicks, 1u);
  EXPECT_EQ(store_->link_day_counts("other", day_of(kDayStartMs))->clicks, 1u);
}

// One batch of clicks on two links over two days: the batch sums its counters per link and day
// before writing them, and the sums must match click by click.
TEST_F(StoreTest, SumsLinkDayCountsWithinOneBatch) {
  std::vector<ClickRecord> clicks;
  for (int i = 0; i < 50; ++i) {
    ClickRecord c = click(kDayStartMs + 10 + i, i % 5 == 0 ? "other" : "summer24");
    c.unique = i % 2 == 0;
    c.reason = i % 7 == 0 ? ClickReason::kBotUa : ClickReason::kHuman;
    clicks.push_back(c);
  }
  clicks.push_back(click(kDayStartMs + 86'400'000 + 1));
  write(clicks);

  // summer24 on day 0: i not divisible by 5 (40 clicks); unique: even i (20); bots: i % 7 == 0
  // and not i % 5 == 0: 7, 14, 21, 28, 42, 49 (6).
  Result<LinkDayCounts> a = store_->link_day_counts("summer24", day_of(kDayStartMs));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->clicks, 40u);
  EXPECT_EQ(a->unique_clicks, 20u);
  EXPECT_EQ(a->bot_clicks, 6u);
  // other on day 0: i = 0, 5, ..., 45 (10), all of them even i but 5, 15, 25, 35, 45 (5 unique),
  // bots 0 and 35 (2).
  Result<LinkDayCounts> b = store_->link_day_counts("other", day_of(kDayStartMs));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->clicks, 10u);
  EXPECT_EQ(b->unique_clicks, 5u);
  EXPECT_EQ(b->bot_clicks, 2u);
  Result<LinkDayCounts> next = store_->link_day_counts("summer24", day_of(kDayStartMs) + 1);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->clicks, 1u);
}

TEST_F(StoreTest, LinkDayCountsAreZeroForUnknownLink) {
  Result<LinkDayCounts> c = store_->link_day_counts("nobody", day_of(kDayStartMs));

  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->clicks, 0u);
  EXPECT_EQ(c->unique_clicks, 0u);
  EXPECT_EQ(c->bot_clicks, 0u);
}

TEST_F(StoreTest, LinkDayCountsSurviveCompactionAndReopen) {
  for (int i = 0; i < 5; ++i) {
    write({click(kDayStartMs + i)});
  }
  ASSERT_FALSE(store_->compact_all());
  write({click(kDayStartMs + 10)});

  store_.reset();
  store_ = open(OpenMode::kReadWrite);

  EXPECT_EQ(store_->link_day_counts("summer24", day_of(kDayStartMs))->clicks, 6u);
  EXPECT_EQ(store_->link_day_counts("summer24", day_of(kDayStartMs))->unique_clicks, 6u);
}

TEST_F(StoreTest, ReopenKeepsData) {
  ClickRecord c = click(kDayStartMs + 9);
  write({c});
  ASSERT_FALSE(store_->put_meta("p/acme", "{}"));

  store_.reset();
  store_ = open(OpenMode::kReadWrite);

  EXPECT_EQ(*store_->get_meta("p/acme"), std::optional<std::string>("{}"));
  ASSERT_TRUE(store_->get_click(c.id)->has_value());
  EXPECT_EQ(scanned_times(*store_, 0, UINT64_MAX), std::vector<std::uint64_t>{kDayStartMs + 9});
}

TEST_F(StoreTest, ReadOnlySeesDataWhileReadWriteIsOpen) {
  ClickRecord c = click(kDayStartMs + 9);
  write({c});
  ASSERT_FALSE(store_->put_meta("p/acme", "{}"));

  std::unique_ptr<Store> reader = open(OpenMode::kReadOnly);

  EXPECT_EQ(*reader->get_meta("p/acme"), std::optional<std::string>("{}"));
  ASSERT_TRUE(reader->get_click(c.id)->has_value());
  EXPECT_EQ(reader->link_day_counts("summer24", day_of(kDayStartMs))->clicks, 1u);
}

TEST_F(StoreTest, SecondReadWriteOpenFailsOnTheLock) {
  EXPECT_THROW(open(OpenMode::kReadWrite), StartupError);
}

TEST_F(StoreTest, CompactAllLeavesLiveSstFiles) {
  std::vector<ClickRecord> clicks;
  for (int i = 0; i < 1000; ++i) {
    clicks.push_back(click(kDayStartMs + i));
  }
  write(clicks);

  ASSERT_FALSE(store_->compact_all());

  EXPECT_GT(store_->live_sst_bytes(), 0u);
  EXPECT_EQ(scanned_times(*store_, 0, UINT64_MAX).size(), 1000u);
}

TEST_F(StoreTest, ProbeWriteSucceeds) {
  EXPECT_FALSE(store_->probe_write());
}

// Clicks name (program, referrer, code) by a dictionary number (docs/storage.md, format 2): the
// text read back, from the record and from the visitor index, is the text written, after a
// reopen too, and each distinct triple is stored once.
TEST_F(StoreTest, ClicksReadBackTheirProgramReferrerAndCodeThroughTheDictionary) {
  std::vector<ClickRecord> clicks;
  for (int i = 0; i < 30; ++i) {
    ClickRecord c = click(kDayStartMs + 1000 * i, "code" + std::to_string(i % 3));
    c.program = i % 2 ? "acme" : "globex";
    c.referrer_id = "rf_" + std::to_string(i % 5);
    c.visitor_hash = 42;
    c.referer_host = i % 4 ? "" : "news.example.org";
    c.unique = i % 7 != 0;
    c.reason = i % 6 ? ClickReason::kHuman : ClickReason::kBotUa;
    clicks.push_back(c);
  }
  write({clicks.begin(), clicks.begin() + 10});
  write({clicks.begin() + 10, clicks.end()});
  std::size_t entries = 0;
  store_->scan_meta("n/", [&](std::string_view, std::string_view) {
    ++entries;
    return true;
  });
  EXPECT_EQ(entries, 30u);  // i % 2, i % 5 and i % 3 together repeat every 30 clicks

  store_.reset();
  store_ = open(OpenMode::kReadWrite);
  for (const auto& want : clicks) {
    auto got = store_->get_click(want.id);
    ASSERT_TRUE(got && *got);
    EXPECT_EQ((*got)->program, want.program);
    EXPECT_EQ((*got)->referrer_id, want.referrer_id);
    EXPECT_EQ((*got)->code, want.code);
    EXPECT_EQ((*got)->referer_host, want.referer_host);
    EXPECT_EQ((*got)->ts_ms, want.ts_ms);
    EXPECT_EQ((*got)->visitor_hash, want.visitor_hash);
    EXPECT_EQ((*got)->unique, want.unique);
    EXPECT_EQ((*got)->reason, want.reason);
  }
  std::size_t n = 0;
  ASSERT_FALSE(store_->scan_visitor(42, 0, UINT64_MAX, [&](const VisitorClick& vc) {
    EXPECT_FALSE(vc.has_id);  // format 3: the id is in the clicks family only
    EXPECT_EQ(id_at(42, vc.ts_ms), clicks[n].id);
    EXPECT_EQ(vc.ts_ms, clicks[n].ts_ms);
    EXPECT_EQ(vc.reason, clicks[n].reason);
    EXPECT_EQ(vc.program, clicks[n].program);
    EXPECT_EQ(vc.referrer_id, clicks[n].referrer_id);
    EXPECT_EQ(vc.code, clicks[n].code);
    ++n;
    return true;
  }));
  EXPECT_EQ(n, clicks.size());

  // A new click on a known triple adds no entry.
  write({click(kDayStartMs + 99'000, "code0")});
  std::size_t after = 0;
  store_->scan_meta("n/", [&](std::string_view, std::string_view) {
    ++after;
    return true;
  });
  EXPECT_EQ(after, 30u);  // acme/rf_1/code0 is click 21's triple
}

// A batch that named a new triple but was never written leaves the entry unstored, so the next
// batch naming it writes it: no stored click may name a number the store does not have.
TEST_F(StoreTest, DictionaryEntryOfAnUnwrittenBatchIsWrittenByTheNextBatch) {
  ClickRecord first = click(kDayStartMs, "lost01");
  {
    ClickBatch dropped = store_->make_click_batch();
    dropped.add(first);
  }  // never written
  ClickRecord second = click(kDayStartMs + 5, "lost01");
  write({second});
  store_.reset();
  store_ = open(OpenMode::kReadWrite);
  auto got = store_->get_click(second.id);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->code, "lost01");
  EXPECT_FALSE(store_->get_click(first.id).value().has_value());
}

// A click whose ts_ms differs from its id's time (the id layout allows it) keeps its own time in
// both families, and a visitor's scan merges such entries with the others in time order.
TEST_F(StoreTest, ClickWithItsOwnTimeKeepsItAndScansInTimeOrder) {
  ClickRecord own = click(kDayStartMs + 500);
  own.id = make_click_id(kDayStartMs + 9'999, 3);
  own.visitor_hash = 7;
  ClickRecord before = click(kDayStartMs + 100);
  before.visitor_hash = 7;
  ClickRecord after = click(kDayStartMs + 900);
  after.visitor_hash = 7;
  write({after, own, before});
  auto got = store_->get_click(own.id);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->ts_ms, kDayStartMs + 500);
  std::vector<std::uint64_t> times;
  std::vector<ClickId> ids;
  ASSERT_FALSE(store_->scan_visitor(7, 0, UINT64_MAX, [&](const VisitorClick& vc) {
    times.push_back(vc.ts_ms);
    // Only the click with its own time is indexed with its id (its id's time is not ts_ms).
    EXPECT_EQ(vc.has_id, vc.ts_ms == kDayStartMs + 500);
    ids.push_back(vc.has_id ? vc.id : id_at(7, vc.ts_ms));
    EXPECT_EQ(vc.code, "summer24");
    return true;
  }));
  EXPECT_EQ(times,
            (std::vector<std::uint64_t>{kDayStartMs + 100, kDayStartMs + 500, kDayStartMs + 900}));
  EXPECT_EQ(ids, (std::vector<ClickId>{before.id, own.id, after.id}));
}

// Two clicks of one visitor in one millisecond share a visitor-index key (format 3): both stay,
// whether written in one batch or two, through a reopen and a full compaction, and the clicks
// family gives their ids back in id order.
TEST_F(StoreTest, ClicksOfOneVisitorInOneMillisecondAllStayInTheVisitorIndex) {
  ClickRecord a = click(kDayStartMs + 7, "linka1");
  ClickRecord b = click(kDayStartMs + 7, "linkb2");
  ClickRecord c = click(kDayStartMs + 7, "linkc3");
  ClickRecord other = click(kDayStartMs + 7, "linka1");  // another visitor, same millisecond
  for (ClickRecord* r : {&a, &b, &c}) {
    r->visitor_hash = 99;
  }
  b.reason = ClickReason::kBotUa;
  other.visitor_hash = 98;
  write({a, b});
  write({c, other});
  auto listed = [&] {
    std::multiset<std::pair<std::string, ClickReason>> got;
    EXPECT_FALSE(store_->scan_visitor(99, 0, UINT64_MAX, [&](const VisitorClick& vc) {
      EXPECT_EQ(vc.ts_ms, kDayStartMs + 7);
      got.emplace(std::string(vc.code), vc.reason);
      return true;
    }));
    return got;
  };
  const std::multiset<std::pair<std::string, ClickReason>> want{{"linka1", ClickReason::kHuman},
                                                                {"linkb2", ClickReason::kBotUa},
                                                                {"linkc3", ClickReason::kHuman}};
  EXPECT_EQ(listed(), want);
  store_.reset();
  store_ = open(OpenMode::kReadWrite);
  ASSERT_FALSE(store_->compact_all());
  EXPECT_EQ(listed(), want);

  std::vector<ClickId> ids;
  ASSERT_FALSE(store_->clicks_at(99, kDayStartMs + 7, [&](const ClickRecord& r) {
    ids.push_back(r.id);
    return true;
  }));
  std::vector<ClickId> sorted{a.id, b.id, c.id};
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(ids, sorted);
  std::size_t none = 0;
  ASSERT_FALSE(store_->clicks_at(99, kDayStartMs + 8, [&](const ClickRecord&) {
    ++none;
    return true;
  }));
  EXPECT_EQ(none, 0u);
}

// Records written in format 1 (before the dictionary) still read back; format 2 records need
// their dictionary entry.
TEST_F(StoreTest, DecodesBothRecordFormats) {
  ClickRecord c = click(kDayStartMs);
  detail::LinkDictionary dict;
  std::string v1;
  encode_click(c, v1);
  auto one = detail::decode_stored_click(c.id, v1, dict);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->code, "summer24");
  EXPECT_EQ(one->referer_host, "news.example.org");

  std::string v2;
  detail::encode_click_v2(c, 300, v2);
  EXPECT_LT(v2.size(), v1.size());
  EXPECT_FALSE(detail::decode_stored_click(c.id, v2, dict).has_value());  // no entry 300
  // The visitor hash reads back from both formats without a decode (clicks_at's filter).
  EXPECT_EQ(detail::stored_visitor_hash(v1), c.visitor_hash);
  EXPECT_EQ(detail::stored_visitor_hash(v2), c.visitor_hash);
  EXPECT_EQ(detail::stored_visitor_hash(v2.substr(0, 10)), std::nullopt);
  EXPECT_EQ(detail::stored_visitor_hash(std::string("\x07") + v2.substr(1)), std::nullopt);
  for (std::uint32_t n = 0; n <= 300; ++n) {
    std::string text =
        detail::LinkDictionary::text_of("acme", "rf_" + std::to_string(n), "summer24");
    ASSERT_EQ(dict.number_for(text).first, n);
  }
  auto two = detail::decode_stored_click(c.id, v2, dict);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->referrer_id, "rf_300");
  EXPECT_EQ(two->ts_ms, c.ts_ms);
  EXPECT_EQ(two->visitor_hash, c.visitor_hash);
  EXPECT_EQ(two->referer_host, "news.example.org");
  for (std::size_t cut = 0; cut < v2.size(); ++cut) {
    EXPECT_FALSE(detail::decode_stored_click(c.id, v2.substr(0, cut), dict).has_value()) << cut;
  }
}

TEST(DayOfTest, CountsUtcDays) {
  EXPECT_EQ(day_of(0), 0u);
  EXPECT_EQ(day_of(86'399'999), 0u);
  EXPECT_EQ(day_of(86'400'000), 1u);
  EXPECT_EQ(day_of(kDayStartMs + 5), 19'675u);
}

TEST_F(StoreTest, CounterMergeHoldsSignedSumsAtTheEnds) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  const std::string key = std::string("p\0r\0", 4) + std::string("\0\0\0\1", 4);
  for (int i = 0; i < 3; ++i) {
    Store::DocBatch b;
    b.stat_adds.emplace_back(key, std::vector<std::int64_t>{kMax / 2, kMin / 2, 5});
    ASSERT_FALSE(store_->write(b, false));
  }
  std::vector<std::int64_t> seen;
  auto keep = [&](std::uint32_t, const std::vector<std::int64_t>& v) { seen = v; };
  ASSERT_FALSE(store_->scan_stats(std::string("p\0r\0", 4), 0, 10, keep));
  EXPECT_EQ(seen, (std::vector<std::int64_t>{kMax, kMin, 15}));
}

}  // namespace
}  // namespace earnd::store
