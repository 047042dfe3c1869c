#include "earnd/ingest/importer.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "earnd/attribution/matcher.h"
#include "earnd/common/click.h"
#include "earnd/common/hash.h"
#include "earnd/ingest/sink.h"
#include "earnd/links/catalog.h"
#include "earnd/store/store.h"

namespace earnd::ingest {
namespace {

constexpr std::uint64_t kDayMs = 86'400'000;
constexpr std::uint64_t kWindowMs = 30 * kDayMs;
constexpr std::uint64_t kConvMs = 1'706'745'600'000;  // 2024-02-01T00:00Z
constexpr std::string_view kHeader = "click_id,ts_ms,link_code,referrer_id,visitor_id,is_bot\n";

// One CSV row; click ids are written as 16 hex digits like the bench's.
std::string row(std::uint64_t click_id,
                std::uint64_t ts_ms,
                std::string_view code,
                std::string_view referrer,
                std::string_view visitor,
                bool bot = false) {
  char id[17];
  std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(click_id));
  return std::string(id) + "," + std::to_string(ts_ms) + "," + std::string(code) + "," +
         std::string(referrer) + "," + std::string(visitor) + "," + (bot ? "1" : "0") + "\n";
}

// A store in a temporary directory, CSV files beside it, and attribution over what was imported.
class ImporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "earnd_importer_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    store_ = store::Store::open({.data_dir = dir_ + "/db", .block_cache_mb = 8});
  }

  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string write_csv(const std::string& name,
                        std::string_view body,
                        std::string_view header = kHeader) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << header << body;
    return path;
  }

  // The external id of the referrer credited for visitor's conversion at at_ms, or nullopt.
  std::optional<std::string> winner(attribution::Model model,
                                    std::string_view visitor,
                                    std::uint64_t at_ms,
                                    bool need_id = true) {
    auto secret = store_->get_meta("s/visitor_secret");
    EXPECT_TRUE(secret && *secret);
    KeyedHasher hasher(**secret);
    auto m = attribution::match(*store_, {.visitor_hash = import_visitor_hash(hasher, visitor),
                                          .at_ms = at_ms,
                                          .window_ms = kWindowMs,
                                          .model = model,
                                          .program = "",
                                          .need_id = need_id});
    EXPECT_TRUE(m.has_value());
    if (!m || !*m) {
      return std::nullopt;
    }
    return links::Catalog(*store_, "").referrer_external_id((*m)->referrer_id);
  }

  std::vector<ClickRecord> stored_clicks() const {
    std::vector<ClickRecord> out;
    auto scanned = store_->scan_clicks(0, UINT64_MAX, [&](const ClickRecord& c) {
      out.push_back(c);
      return true;
    });
    EXPECT_TRUE(scanned.has_value());
    return out;
  }

  std::size_t meta_count(std::string_view prefix) const {
    std::size_t n = 0;
    store_->scan_meta(prefix, [&](std::string_view, std::string_view) {
      ++n;
      return true;
    });
    return n;
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
};

TEST(ImportClickIdTest, KeepsTimeShardAndSourceIdInOrder) {
  ClickId id = import_click_id(kConvMs, 130, 0x0123456789abcdefULL);
  EXPECT_EQ(id.ts_ms(), kConvMs);
  EXPECT_EQ(id.shard(), 130 % 64);
  EXPECT_EQ(id.bytes[7], 0);
  EXPECT_EQ(id.bytes[8], 0x01);
  EXPECT_EQ(id.bytes[15], 0xef);
  auto parsed = ClickId::parse(id.to_string());
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, id);
  EXPECT_LT(import_click_id(kConvMs, 130, 0x0a), import_click_id(kConvMs, 130, 0x0b));
  EXPECT_LT(import_click_id(kConvMs, 130, 0xff), import_click_id(kConvMs + 1, 130, 0));
  // The shard follows the configured clicks.shard_count, as on the redirect path.
  EXPECT_EQ(import_click_id(kConvMs, 130, 7, 16).shard(), 130 % 16);
  EXPECT_EQ(import_click_id(kConvMs, 130, 7, 1).shard(), 0);
}

TEST_F(ImporterTest, StoresRowsWithTheWritersClassification) {
  std::string csv = row(1, kConvMs - 5000, "rcode01", "7", "100") +
                    row(2, kConvMs - 4000, "rcode01", "7", "100") +  // same link within an hour
                    row(3, kConvMs - 3000, "rcode02", "8", "100", true);
  auto stats = import_clicks(*store_, write_csv("clicks.csv", csv));
  EXPECT_EQ(stats.clicks, 3u);
  EXPECT_EQ(stats.bots, 1u);
  EXPECT_EQ(stats.unique, 2u);
  EXPECT_EQ(stats.programs_created, 1u);

  auto clicks = stored_clicks();
  ASSERT_EQ(clicks.size(), 3u);
  EXPECT_TRUE(clicks[0].unique);
  EXPECT_FALSE(clicks[1].unique);
  EXPECT_EQ(clicks[2].reason, ClickReason::kBotUa);
  EXPECT_EQ(clicks[0].program, "default");
  EXPECT_EQ(clicks[0].code, "rcode01");
  EXPECT_EQ(clicks[1].id, import_click_id(kConvMs - 4000, clicks[1].visitor_hash, 2));
}

TEST_F(ImporterTest, TiesInOneMillisecondBreakByTheCsvClickId) {
  // Listed out of order: the id decides, not the row order.
  std::string csv = row(0x0b, kConvMs - 1000, "rcode0b", "11", "5") +
                    row(0x0a, kConvMs - 1000, "rcode0a", "10", "5");
  (void)import_clicks(*store_, write_csv("clicks.csv", csv));
  for (bool need_id : {true, false}) {  // batch queries (need_id false) break the tie alike
    EXPECT_EQ(winner(attribution::Model::kLastClick, "5", kConvMs, need_id), "11");
    EXPECT_EQ(winner(attribution::Model::kFirstClick, "5", kConvMs, need_id), "10");
  }
}

// Importing into a store that has clicks skips the rows it holds already (as the admin import
// does), also a changed copy of one: a stored click is never written over, so the visitor
// index never keeps an old row's entry beside a new one.
TEST_F(ImporterTest, ARowImportedAgainWithAChangeIsSkipped) {
  std::string human = row(0xaa, kConvMs - 1000, "ralpha1", "1", "7");
  std::string bot = row(0xaa, kConvMs - 1000, "ralpha1", "1", "7", true);
  EXPECT_EQ(import_clicks(*store_, write_csv("a.csv", human)).clicks, 1u);
  auto again = import_clicks(
      *store_, write_csv("b.csv", bot + row(0xab, kConvMs - 9000, "rolder2", "2", "7")));
  EXPECT_EQ(again.clicks, 1u);
  EXPECT_EQ(again.duplicates, 1u);
  auto clicks = stored_clicks();
  ASSERT_EQ(clicks.size(), 2u);
  for (bool need_id : {true, false}) {
    EXPECT_EQ(winner(attribution::Model::kLastClick, "7", kConvMs, need_id), "1");
    EXPECT_EQ(winner(attribution::Model::kFirstClick, "7", kConvMs, need_id), "2");
  }
}

// Should a click ever be written twice (a writer that does not check), the old copy's index
// operand stays beside the new one; the matcher then follows the record.
TEST_F(ImporterTest, AClickWrittenTwiceIsMatchedAsItIsStored) {
  ClickRecord c;
  c.ts_ms = kConvMs - 1000;
  c.visitor_hash = 77;
  c.id = make_click_id(c.ts_ms, 77 % 64);
  c.program = "default";
  c.referrer_id = "rf_x";
  c.code = "twice01";
  auto put = [&](ClickReason reason) {
    c.reason = reason;
    store::ClickBatch batch = store_->make_click_batch();
    batch.add(c);
    ASSERT_FALSE(store_->write_clicks(batch, false));
  };
  put(ClickReason::kHuman);
  put(ClickReason::kBotUa);  // the record is a bot now; a human operand remains in the index
  for (bool need_id : {true, false}) {
    for (auto model : {attribution::Model::kLastClick, attribution::Model::kFirstClick}) {
      auto m = attribution::match(*store_, {.visitor_hash = 77,
                                            .at_ms = kConvMs,
                                            .window_ms = kWindowMs,
                                            .model = model,
                                            .program = "",
                                            .need_id = need_id});
      ASSERT_TRUE(m.has_value());
      EXPECT_FALSE(m->has_value());
    }
  }
  put(ClickReason::kHuman);
  auto m = attribution::match(*store_, {.visitor_hash = 77,
                                        .at_ms = kConvMs,
                                        .window_ms = kWindowMs,
                                        .model = attribution::Model::kLastClick,
                                        .program = "",
                                        .need_id = false});
  ASSERT_TRUE(m && *m);
  EXPECT_EQ((*m)->referrer_id, "rf_x");
}

// Many stale times (more than the matcher keeps while it scans): the older part of the window is
// matched again and its human click found.
TEST_F(ImporterTest, AnOlderHumanClickWinsBehindManyClicksWrittenTwice) {
  std::vector<ClickRecord> clicks;
  for (std::uint64_t i = 0; i < 150; ++i) {
    ClickRecord c;
    c.ts_ms = kConvMs - 100'000 + i * 10;
    c.visitor_hash = 78;
    c.id = make_click_id(c.ts_ms, 78 % 64);
    c.program = "default";
    c.referrer_id = i == 0 ? "rf_first" : "rf_later";
    c.code = "many01";
    clicks.push_back(c);
  }
  store::ClickBatch batch = store_->make_click_batch();
  for (const auto& c : clicks) {
    batch.add(c);
  }
  ASSERT_FALSE(store_->write_clicks(batch, false));
  batch.clear();
  for (std::size_t i = 1; i < clicks.size(); ++i) {
    clicks[i].reason = ClickReason::kBotUa;  // every later click becomes a bot
    batch.add(clicks[i]);
  }
  ASSERT_FALSE(store_->write_clicks(batch, false));
  for (bool need_id : {true, false}) {
    auto m = attribution::match(*store_, {.visitor_hash = 78,
                                          .at_ms = kConvMs,
                                          .window_ms = kWindowMs,
                                          .model = attribution::Model::kLastClick,
                                          .program = "",
                                          .need_id = need_id});
    ASSERT_TRUE(m && *m);
    EXPECT_EQ((*m)->referrer_id, "rf_first");
    if (need_id) {
      EXPECT_EQ((*m)->id, clicks[0].id);
    }
  }
}

// The admin import (text parts) skips rows it stored before, also after clicks.shard_count
// changed the shard byte of the ids it would make.
TEST_F(ImporterTest, TextImportSkipsRowsStoredUnderAnotherShardCount) {
  links::Catalog catalog(*store_, "");
  KeyedHasher hasher(store_->load_or_create_secret(kVisitorSecretName));
  StoreSink sink(*store_);
  std::string text = std::string(kHeader);
  for (int i = 0; i < 20; ++i) {
    text += row(0x100 + i, kConvMs - 1000 - i, "rshard1", "1",
                std::string("v").append(std::to_string(i)));
  }
  ImportOptions eight;
  eight.shard_count = 8;
  auto first = import_clicks_text(text, "part", catalog, hasher, sink, *store_, eight);
  EXPECT_EQ(first.clicks, 20u);
  EXPECT_EQ(first.duplicates, 0u);
  ImportOptions sixteen;
  sixteen.shard_count = 16;
  auto again = import_clicks_text(text, "part", catalog, hasher, sink, *store_, sixteen);
  EXPECT_EQ(again.clicks, 0u);
  EXPECT_EQ(again.duplicates, 20u);
  EXPECT_EQ(stored_clicks().size(), 20u);
  for (const auto& c : stored_clicks()) {
    EXPECT_EQ(c.id.shard(), c.visitor_hash % 8);
  }
}

TEST_F(ImporterTest, AHumanClickWinsOverABotInTheSameMillisecond) {
  // One visitor-index key holds both clicks; the bot listed last must not hide the human.
  std::string csv = row(0x0c, kConvMs - 1000, "rhum0c", "12", "6") +
                    row(0x0d, kConvMs - 1000, "rbot0d", "13", "6", true) +
                    row(0x0e, kConvMs - 5000, "rold0e", "14", "6");
  (void)import_clicks(*store_, write_csv("clicks.csv", csv));
  for (bool need_id : {true, false}) {
    EXPECT_EQ(winner(attribution::Model::kLastClick, "6", kConvMs, need_id), "12");
    EXPECT_EQ(winner(attribution::Model::kFirstClick, "6", kConvMs, need_id), "14");
  }
}

TEST_F(ImporterTest, BotsNeverWin) {
  std::string csv = row(1, kConvMs - 10, "rhuman1", "1", "42") +
                    row(2, kConvMs - 1, "rbot001", "2", "42", true) +
                    row(3, kConvMs - 1, "rbot001", "2", "43", true);
  (void)import_clicks(*store_, write_csv("clicks.csv", csv));
  EXPECT_EQ(winner(attribution::Model::kLastClick, "42", kConvMs), "1");
  EXPECT_EQ(winner(attribution::Model::kLastClick, "43", kConvMs), std::nullopt);
  EXPECT_EQ(winner(attribution::Model::kFirstClick, "43", kConvMs), std::nullopt);
}

TEST_F(ImporterTest, WindowIncludesBothEndsExactly) {
  std::string csv = row(1, kConvMs - kWindowMs - 1, "rold001", "1", "9") +  // 30 d + 1 ms
                    row(2, kConvMs - kWindowMs, "redge01", "2", "9") +      // exactly 30 d
                    row(3, kConvMs, "rnow001", "3", "9") +                  // the same ms
                    row(4, kConvMs + 1, "rlate01", "4", "9");               // after
  (void)import_clicks(*store_, write_csv("clicks.csv", csv));
  EXPECT_EQ(winner(attribution::Model::kFirstClick, "9", kConvMs), "2");
  EXPECT_EQ(winner(attribution::Model::kLastClick, "9", kConvMs), "3");
  EXPECT_EQ(winner(attribution::Model::kFirstClick, "9", kConvMs + 1), "3");
  EXPECT_EQ(winner(attribution::Model::kLastClick, "9", kConvMs - kWindowMs - 2), std::nullopt);
}

TEST_F(ImporterTest, FirstAndLastPickOppositeEnds) {
  std::string csv = row(1, kConvMs - 20 * kDayMs, "rfirst1", "1", "77") +
                    row(2, kConvMs - 10 * kDayMs, "rmiddle", "2", "77") +
                    row(3, kConvMs - 1 * kDayMs, "rlast01", "3", "77");
  (void)import_clicks(*store_, write_csv("clicks.csv", csv));
  EXPECT_EQ(winner(attribution::Model::kFirstClick, "77", kConvMs), "1");
  EXPECT_EQ(winner(attribution::Model::kLastClick, "77", kConvMs), "3");
  EXPECT_EQ(winner(attribution::Model::kLastClick, "78", kConvMs), std::nullopt);
}

TEST_F(ImporterTest, CreatesUnknownLinksAndReferrersOnce) {
  std::string csv = row(1, kConvMs, "rcodea1", "7", "1") + row(2, kConvMs, "rcodea2", "7", "2") +
                    row(3, kConvMs, "rcodeb1", "8", "3") + row(4, kConvMs + 1, "rcodea1", "7", "4");
  auto first = import_clicks(*store_, write_csv("clicks.csv", csv));
  EXPECT_EQ(first.links_created, 3u);
  EXPECT_EQ(first.referrers_created, 2u);
  EXPECT_EQ(meta_count("l/"), 3u);
  EXPECT_EQ(meta_count("r/"), 2u);

  // The same file again: nothing new, the same click keys (attribution is unchanged).
  auto again = import_clicks(*store_, write_csv("clicks.csv", csv));
  EXPECT_EQ(again.links_created, 0u);
  EXPECT_EQ(again.referrers_created, 0u);
  EXPECT_EQ(again.programs_created, 0u);
  EXPECT_EQ(stored_clicks().size(), 4u);

  // A new code of a known referrer: one link, no referrer.
  auto more = import_clicks(*store_, write_csv("more.csv", row(5, kConvMs, "rcodea3", "7", "5")));
  EXPECT_EQ(more.links_created, 1u);
  EXPECT_EQ(more.referrers_created, 0u);
  EXPECT_EQ(meta_count("r/"), 2u);
  EXPECT_EQ(winner(attribution::Model::kLastClick, "5", kConvMs), "7");
}

TEST_F(ImporterTest, MalformedRowNamesItsLineAndWritesNothing) {
  std::string csv = row(1, kConvMs, "rcode01", "7", "1") + "zz,1,rcode02,8,2,0\n";
  try {
    (void)import_clicks(*store_, write_csv("bad.csv", csv));
    FAIL() << "no ImportError";
  } catch (const ImportError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.csv:3:"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(stored_clicks().empty());
  EXPECT_EQ(meta_count("l/"), 0u);
  EXPECT_THROW((void)import_clicks(*store_, write_csv("hdr.csv", "", "id,ts\n")), ImportError);
}

// Found by the csv_import fuzzer: a referrer id that is not UTF-8 was stored in the referrer's
// JSON record, and the next Catalog (the server's next start) refused the whole store.
TEST_F(ImporterTest, ReferrerIdThatIsNotUtf8TextNamesItsLineAndLeavesTheCatalogReadable) {
  for (std::string bad : {std::string("u\xa6"
                                      "1"),
                          std::string("u\t1"), std::string("\xc3")}) {
    std::string csv = row(1, kConvMs, "rcode01", "7", "1") + row(2, kConvMs, "rcode02", bad, "2");
    try {
      (void)import_clicks(*store_, write_csv("bad.csv", csv));
      FAIL() << "no ImportError";
    } catch (const ImportError& e) {
      EXPECT_NE(std::string(e.what()).find("bad.csv:3:"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("referrer_id"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(meta_count("r/"), 0u);
  EXPECT_TRUE(stored_clicks().empty());
  // UTF-8 text is fine, and the store still opens its catalog afterwards.
  auto ok =
      import_clicks(*store_, write_csv("ok.csv", row(3, kConvMs, "rcode03", "J\xc3\xbcrgen", "3")));
  EXPECT_EQ(ok.referrers_created, 1u);
  EXPECT_NO_THROW(links::Catalog(*store_, ""));
  EXPECT_EQ(winner(attribution::Model::kLastClick, "3", kConvMs), "J\xc3\xbcrgen");
}

TEST_F(ImporterTest, ConversionsBecomeDocumentsUnderTheProgram) {
  std::string csv = "1,1704069509231,84734,0,signup\n2,1704089323281,99,4990,sale\n";
  auto stats = import_conversions(
      *store_, write_csv("conv.csv", csv, "conv_id,ts_ms,visitor_id,amount_cents,kind\n"),
      {.program = "shop"});
  EXPECT_EQ(stats.conversions, 2u);
  EXPECT_EQ(stats.sales, 1u);
  EXPECT_EQ(stats.programs_created, 1u);

  auto doc = store_->get_doc("ic/shop/2");
  ASSERT_TRUE(doc && *doc);
  auto v = boost::json::parse(**doc).as_object();
  EXPECT_EQ(v.at("amount_cents").to_number<std::uint64_t>(), 4990u);
  EXPECT_EQ(v.at("kind").as_string(), "sale");
  KeyedHasher hasher(**store_->get_meta("s/visitor_secret"));
  EXPECT_EQ(v.at("visitor_hash").to_number<std::uint64_t>(), import_visitor_hash(hasher, "99"));
}

TEST_F(ImporterTest, ConversionAmountAboveTheServersMaximumNamesItsLine) {
  std::string csv =
      "1,1704069509231,84734,1000000000000000,sale\n"
      "2,1704089323281,99,1000000000000001,sale\n";
  try {
    (void)import_conversions(
        *store_, write_csv("big.csv", csv, "conv_id,ts_ms,visitor_id,amount_cents,kind\n"),
        {.program = "shop"});
    FAIL() << "no ImportError";
  } catch (const ImportError& e) {
    EXPECT_NE(std::string(e.what()).find("big.csv:3: amount_cents must be an integer from 0 to "
                                         "1000000000000000"),
              std::string::npos)
        << e.what();
  }
  auto doc = store_->get_doc("ic/shop/1");
  ASSERT_TRUE(doc);
  EXPECT_FALSE(doc->has_value());
}

}  // namespace
}  // namespace earnd::ingest
