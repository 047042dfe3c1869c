#include "earnd/common/text.h"

#include <string>

#include <gtest/gtest.h>

namespace earnd {
namespace {

TEST(TextTest, AcceptsWellFormedUtf8) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("u_1"));
  EXPECT_TRUE(is_valid_utf8("J\xc3\xbcrgen"));              // U+00FC
  EXPECT_TRUE(is_valid_utf8("\xe2\x82\xac"));               // U+20AC
  EXPECT_TRUE(is_valid_utf8("\xf0\x9f\x98\x80"));           // U+1F600
  EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));           // U+10FFFF, the last code point
  EXPECT_TRUE(is_valid_utf8(std::string("a\0b", 3)));       // NUL is valid UTF-8 ...
  EXPECT_FALSE(is_printable_utf8(std::string("a\0b", 3)));  // ... but not printable
}

TEST(TextTest, RefusesMalformedUtf8) {
  EXPECT_FALSE(
      is_valid_utf8("u\xa6"
                    "1"));                          // a lone continuation byte (the fuzzer's input)
  EXPECT_FALSE(is_valid_utf8("\xc3"));              // truncated at the end
  EXPECT_FALSE(is_valid_utf8("\xc3(x"));            // second byte not a continuation
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xe0\x80\xaf"));      // overlong, three bytes
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // U+D800, a surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // U+110000, past the end
  EXPECT_FALSE(is_valid_utf8("\xff"));
}

TEST(TextTest, PrintableRefusesControlCharacters) {
  EXPECT_TRUE(is_printable_utf8("Ana Lima \xc3\xa9"));
  EXPECT_FALSE(is_printable_utf8("a\tb"));
  EXPECT_FALSE(is_printable_utf8("a\r\nb"));
  EXPECT_FALSE(is_printable_utf8("a\x7f"));
  EXPECT_FALSE(is_printable_utf8("a\xa6"));
}

}  // namespace
}  // namespace earnd
