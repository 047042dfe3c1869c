#include "earnd/common/hash.h"

#include <array>
#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace earnd {
namespace {

class KeyedHasherTest : public ::testing::Test {
 protected:
  KeyedHasher hasher_{"visitor-secret-one"};
};

TEST_F(KeyedHasherTest, SameInputsGiveSameHash) {
  KeyedHasher again("visitor-secret-one");

  EXPECT_EQ(hasher_.hash("203.0.113.7", "Mozilla/5.0"), again.hash("203.0.113.7", "Mozilla/5.0"));
  EXPECT_EQ(hasher_.hash("203.0.113.7", "Mozilla/5.0"), hasher_.hash("203.0.113.7", "Mozilla/5.0"));
}

TEST_F(KeyedHasherTest, DifferentSecretsGiveDifferentHashes) {
  KeyedHasher other("visitor-secret-two");
  KeyedHasher empty("");

  EXPECT_NE(hasher_.hash("203.0.113.7", "ua"), other.hash("203.0.113.7", "ua"));
  EXPECT_NE(hasher_.hash("203.0.113.7", "ua"), empty.hash("203.0.113.7", "ua"));
  EXPECT_NE(hasher_.digest("code"), other.digest("code"));
}

TEST_F(KeyedHasherTest, KeyedHashDiffersFromUnkeyed) {
  KeyedHasher empty("");

  EXPECT_NE(hasher_.hash("abc"), xxh3("abc"));
  EXPECT_NE(empty.hash("abc"), xxh3("abc"));
}

TEST_F(KeyedHasherTest, SeparatesTheTwoParts) {
  EXPECT_NE(hasher_.hash("ab", "c"), hasher_.hash("a", "bc"));
  EXPECT_NE(hasher_.hash("abc", ""), hasher_.hash("ab", "c"));
  EXPECT_NE(hasher_.hash("", "abc"), hasher_.hash("abc", ""));
}

TEST_F(KeyedHasherTest, DifferentInputsGiveDifferentHashes) {
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 10'000; ++i) {
    seen.insert(hasher_.hash("198.51.100." + std::to_string(i), "ua"));
  }

  EXPECT_EQ(seen.size(), 10'000u);
}

TEST_F(KeyedHasherTest, DigestIs16HexOfTheHash) {
  std::array<char, 16> d = hasher_.digest("Summer24");
  char expected[17];
  std::snprintf(expected, sizeof(expected), "%016llx",
                static_cast<unsigned long long>(hasher_.hash("Summer24")));

  EXPECT_EQ(std::string_view(d.data(), d.size()), std::string_view(expected, 16));
  for (char c : d) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << c;
  }
}

TEST_F(KeyedHasherTest, DigestKeepsLeadingZeros) {
  // Some of 4096 inputs must hash below 2^60; their digest must still be 16 digits wide.
  int with_leading_zero = 0;
  for (int i = 0; i < 4096; ++i) {
    std::string text = std::to_string(i);
    std::array<char, 16> d = hasher_.digest(text);
    if (hasher_.hash(text) < (std::uint64_t{1} << 60)) {
      ++with_leading_zero;
      EXPECT_EQ(d[0], '0') << text;
    }
  }

  EXPECT_GT(with_leading_zero, 0);
}

TEST(Xxh3Test, MatchesReferenceValueForEmptyInput) {
  // XXH3_64bits of zero bytes with the default secret and seed 0.
  EXPECT_EQ(xxh3(""), 0x2D06800538D394C2ULL);
}

TEST(Xxh3Test, SameDataGivesSameHash) {
  EXPECT_EQ(xxh3("earnd"), xxh3(std::string("earnd")));
  EXPECT_NE(xxh3("earnd"), xxh3("earne"));
}

}  // namespace
}  // namespace earnd
