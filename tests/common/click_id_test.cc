#include "earnd/common/click_id.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace earnd {
namespace {

// A fixed time in 2023, so the 48-bit timestamp has bits set in every byte.
constexpr std::uint64_t kBaseMs = 1'700'000'000'123;

// The 32 characters of lowercase Crockford base32, the only ones to_string may write.
constexpr std::string_view kAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";

ClickId id_from_bytes(std::uint8_t fill) {
  ClickId id;
  id.bytes.fill(fill);
  return id;
}

TEST(ClickIdTest, OrdersIdsByTimeInBytesAndText) {
  // The shard and random bytes are chosen against the order: only the time may decide it.
  std::vector<ClickId> ids;
  for (std::uint64_t i = 0; i < 200; ++i) {
    ids.push_back(make_click_id(kBaseMs + i, static_cast<std::uint8_t>(255 - i)));
  }

  for (std::size_t i = 1; i < ids.size(); ++i) {
    EXPECT_LT(ids[i - 1], ids[i]) << "at " << i;
    EXPECT_LT(ids[i - 1].to_string(), ids[i].to_string()) << "at " << i;
  }
}

TEST(ClickIdTest, OrdersAcrossByteBoundariesOfTheTimestamp) {
  // 0x..ff -> 0x..100 changes two bytes; the text order must follow.
  ClickId before = make_click_id(0xffff, 0);
  ClickId after = make_click_id(0x10000, 0);

  EXPECT_LT(before, after);
  EXPECT_LT(before.to_string(), after.to_string());
}

TEST(ClickIdTest, UniqueAcrossFourThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50'000;
  std::vector<std::vector<ClickId>> made(kThreads);

  // Same time and shard everywhere, so only the random bytes can keep the ids apart.
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&made, t] {
      made[t].reserve(kPerThread);
      for (int i = 0; i < kPerThread; ++i) {
        made[t].push_back(make_click_id(kBaseMs, 7));
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }

  std::vector<ClickId> all;
  for (const auto& v : made) {
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(ClickIdTest, ParsesItsOwnText) {
  for (int i = 0; i < 1000; ++i) {
    ClickId id = make_click_id(kBaseMs + i, static_cast<std::uint8_t>(i));
    std::optional<ClickId> parsed = ClickId::parse(id.to_string());

    ASSERT_TRUE(parsed.has_value()) << id.to_string();
    EXPECT_EQ(*parsed, id);
  }
}

TEST(ClickIdTest, TextIs26UrlSafeCharacters) {
  for (int i = 0; i < 1000; ++i) {
    std::string text = make_click_id(kBaseMs + i, 3).to_string();

    ASSERT_EQ(text.size(), kClickIdTextLength);
    for (char c : text) {
      EXPECT_NE(kAlphabet.find(c), std::string_view::npos) << text;
    }
  }
}

TEST(ClickIdTest, ToTextMatchesToString) {
  ClickId id = make_click_id(kBaseMs, 9);
  char buf[kClickIdTextLength];

  id.to_text(buf);

  EXPECT_EQ(std::string(buf, kClickIdTextLength), id.to_string());
}

TEST(ClickIdTest, EncodesKnownBytes) {
  // 125 bits fill 25 characters; the 26th holds the last 3 bits and 2 zero padding bits.
  EXPECT_EQ(id_from_bytes(0x00).to_string(), std::string(26, '0'));
  EXPECT_EQ(id_from_bytes(0xff).to_string(), std::string(25, 'z') + "w");
}

TEST(ClickIdTest, KeepsShardByte) {
  for (int shard : {0, 1, 42, 255}) {
    ClickId id = make_click_id(kBaseMs, static_cast<std::uint8_t>(shard));

    EXPECT_EQ(id.shard(), shard);
    EXPECT_EQ(ClickId::parse(id.to_string())->shard(), shard);
  }
}

TEST(ClickIdTest, RecoversTimestamp) {
  for (std::uint64_t ts :
       {std::uint64_t{0}, std::uint64_t{1}, kBaseMs, (std::uint64_t{1} << 48) - 1}) {
    ClickId id = make_click_id(ts, 5);

    EXPECT_EQ(id.ts_ms(), ts);
    EXPECT_EQ(ClickId::parse(id.to_string())->ts_ms(), ts);
  }
}

TEST(ClickIdTest, ParseRejectsWrongLength) {
  std::string text = make_click_id(kBaseMs, 1).to_string();

  EXPECT_FALSE(ClickId::parse("").has_value());
  EXPECT_FALSE(ClickId::parse(text.substr(0, 25)).has_value());
  EXPECT_FALSE(ClickId::parse(text + "0").has_value());
}

TEST(ClickIdTest, ParseRejectsCharactersOutsideTheAlphabet) {
  std::string good = id_from_bytes(0x00).to_string();

  // 'u' is the one letter Crockford leaves out; the others are not base32 at all.
  for (char bad : {'u', 'U', '!', '-', '_', ' ', '=', '\0', '\x80'}) {
    std::string text = good;
    text[10] = bad;
    EXPECT_FALSE(ClickId::parse(text).has_value()) << "char code " << int(bad);
  }
}

TEST(ClickIdTest, ParseRejectsNonzeroPaddingBits) {
  std::string text = id_from_bytes(0x00).to_string();

  // The last character's two low bits are padding: values 1, 2 and 3 set them.
  for (char last : {'1', '2', '3'}) {
    text.back() = last;
    EXPECT_FALSE(ClickId::parse(text).has_value()) << text;
  }
  text.back() = '4';
  EXPECT_TRUE(ClickId::parse(text).has_value());
}

TEST(ClickIdTest, ParseIgnoresCase) {
  ClickId id = make_click_id(kBaseMs, 200);
  std::string upper = id.to_string();
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });

  std::optional<ClickId> parsed = ClickId::parse(upper);

  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, id);
}

TEST(ClickIdTest, ParseReadsCrockfordAliases) {
  // O reads as 0; I and L read as 1.
  std::string zeros(26, '0');
  std::string ones = std::string(25, '0') + "4";
  ones[0] = '1';

  EXPECT_EQ(ClickId::parse(std::string(26, 'O')), ClickId::parse(zeros));
  std::string with_i = ones;
  with_i[0] = 'I';
  std::string with_l = ones;
  with_l[0] = 'l';
  EXPECT_EQ(ClickId::parse(with_i), ClickId::parse(ones));
  EXPECT_EQ(ClickId::parse(with_l), ClickId::parse(ones));
}

TEST(ClickIdTest, KeyRoundTripsThroughFromKey) {
  ClickId id = make_click_id(kBaseMs, 77);

  std::optional<ClickId> back = ClickId::from_key(id.key());

  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, id);
  EXPECT_EQ(id.key().size(), kClickIdBytes);
  EXPECT_FALSE(ClickId::from_key(id.key().substr(1)).has_value());
}

}  // namespace
}  // namespace earnd
