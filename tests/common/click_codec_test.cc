#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "earnd/common/click.h"
#include "earnd/common/click_id.h"
#include "earnd/common/error.h"

namespace earnd {
namespace {

class ClickCodecTest : public ::testing::Test {
 protected:
  ClickCodecTest() {
    record_.id = make_click_id(1'700'000'000'123, 12);
    record_.ts_ms = 1'700'000'000'123;
    record_.visitor_hash = 0x0123456789abcdefULL;
    record_.program = "acme";
    record_.referrer_id = "rf_0123456789ab";
    record_.code = "Summer24";
    record_.referer_host = "news.example.org";
    record_.unique = true;
    record_.reason = ClickReason::kHuman;
  }

  std::string encode(const ClickRecord& c) {
    std::string out;
    encode_click(c, out);
    return out;
  }

  static void expect_same(const ClickRecord& a, const ClickRecord& b) {
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.ts_ms, b.ts_ms);
    EXPECT_EQ(a.visitor_hash, b.visitor_hash);
    EXPECT_EQ(a.program, b.program);
    EXPECT_EQ(a.referrer_id, b.referrer_id);
    EXPECT_EQ(a.code, b.code);
    EXPECT_EQ(a.referer_host, b.referer_host);
    EXPECT_EQ(a.unique, b.unique);
    EXPECT_EQ(a.reason, b.reason);
  }

  ClickRecord record_;
};

TEST_F(ClickCodecTest, RoundTripsEveryFieldForEveryReason) {
  for (int r = 0; r < kReasonCount; ++r) {
    for (bool unique : {true, false}) {
      record_.reason = static_cast<ClickReason>(r);
      record_.unique = unique;

      Result<ClickRecord> back = decode_click(record_.id, encode(record_));

      ASSERT_TRUE(back.has_value()) << "reason " << r;
      expect_same(*back, record_);
    }
  }
}

TEST_F(ClickCodecTest, RoundTripsEmptyStringsAndExtremeNumbers) {
  record_.program.clear();
  record_.referrer_id.clear();
  record_.code.clear();
  record_.referer_host.clear();
  record_.ts_ms = UINT64_MAX;
  record_.visitor_hash = 0;

  Result<ClickRecord> back = decode_click(record_.id, encode(record_));

  ASSERT_TRUE(back.has_value());
  expect_same(*back, record_);
}

TEST_F(ClickCodecTest, TakesIdFromTheKey) {
  ClickId other = make_click_id(5, 1);

  Result<ClickRecord> back = decode_click(other, encode(record_));

  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->id, other);
}

TEST_F(ClickCodecTest, CapsLongStringsAt255Bytes) {
  record_.program = std::string(300, 'p');
  record_.referer_host = std::string(256, 'h');

  Result<ClickRecord> back = decode_click(record_.id, encode(record_));

  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->program, std::string(255, 'p'));
  EXPECT_EQ(back->referer_host, std::string(255, 'h'));
  // The fields after a capped one must still line up.
  EXPECT_EQ(back->referrer_id, record_.referrer_id);
  EXPECT_EQ(back->code, record_.code);
}

TEST_F(ClickCodecTest, WritesDocumentedLayout) {
  record_.unique = false;
  record_.reason = ClickReason::kVelocity;
  std::string v = encode(record_);

  // Three header bytes, two u64, then each string with its length byte.
  ASSERT_EQ(v.size(), 3u + 16u + (1u + 4u) + (1u + 15u) + (1u + 8u) + (1u + 16u));
  EXPECT_EQ(v[0], 1);                                  // version
  EXPECT_EQ(v[1], 0);                                  // flags: not unique
  EXPECT_EQ(v[2], 5);                                  // reason
  EXPECT_EQ(static_cast<unsigned char>(v[11]), 0x01);  // visitor_hash, big-endian
  EXPECT_EQ(static_cast<unsigned char>(v[18]), 0xef);
  EXPECT_EQ(v[19], 4);  // length of "acme"
}

TEST_F(ClickCodecTest, RejectsEveryTruncation) {
  std::string full = encode(record_);

  for (std::size_t n = 0; n < full.size(); ++n) {
    Result<ClickRecord> back = decode_click(record_.id, full.substr(0, n));

    ASSERT_FALSE(back.has_value()) << "prefix of " << n << " bytes";
    EXPECT_EQ(back.error(), make_error_code(Errc::kCorruptRecord));
  }
}

TEST_F(ClickCodecTest, RejectsUnknownVersion) {
  for (char version : {'\0', '\x02', '\xff'}) {
    std::string v = encode(record_);
    v[0] = version;

    Result<ClickRecord> back = decode_click(record_.id, v);

    ASSERT_FALSE(back.has_value());
    EXPECT_EQ(back.error(), make_error_code(Errc::kCorruptRecord));
  }
}

TEST_F(ClickCodecTest, RejectsUnknownReason) {
  std::string v = encode(record_);
  v[2] = static_cast<char>(kReasonCount);

  Result<ClickRecord> back = decode_click(record_.id, v);

  ASSERT_FALSE(back.has_value());
  EXPECT_EQ(back.error(), make_error_code(Errc::kCorruptRecord));
}

TEST_F(ClickCodecTest, NamesEveryReason) {
  EXPECT_EQ(reason_name(ClickReason::kHuman), "");
  EXPECT_EQ(reason_name(ClickReason::kBotUa), "bot_ua");
  EXPECT_EQ(reason_name(ClickReason::kPreview), "preview");
  EXPECT_EQ(reason_name(ClickReason::kPrefetch), "prefetch");
  EXPECT_EQ(reason_name(ClickReason::kHead), "head");
  EXPECT_EQ(reason_name(ClickReason::kVelocity), "velocity");
  EXPECT_EQ(reason_name(ClickReason::kEmptyUa), "empty_ua");
}

TEST_F(ClickCodecTest, AppendsCsvRowForKnownRecord) {
  record_.id = ClickId{};  // all zero bytes: 26 '0' characters
  record_.visitor_hash = 0xdeadbeef;
  record_.reason = ClickReason::kBotUa;
  std::string out = "prefix\n";

  append_click_csv(record_, out);

  EXPECT_EQ(out,
            "prefix\n00000000000000000000000000,1700000000123,acme,rf_0123456789ab,Summer24,"
            "00000000deadbeef,1,bot_ua\n");
}

TEST_F(ClickCodecTest, AppendsCsvRowWithEmptyReasonForHuman) {
  record_.unique = false;
  std::string out;

  append_click_csv(record_, out);

  std::string expected =
      record_.id.to_string() + ",1700000000123,acme,rf_0123456789ab,Summer24,0123456789abcdef,0,\n";
  EXPECT_EQ(out, expected);
}

TEST_F(ClickCodecTest, CsvRowHasAColumnPerHeaderField) {
  std::string out;
  append_click_csv(record_, out);

  auto commas = [](std::string_view s) { return std::count(s.begin(), s.end(), ','); };
  EXPECT_EQ(commas(out), commas(kClickCsvHeader));
  EXPECT_EQ(out.back(), '\n');
}

}  // namespace
}  // namespace earnd
