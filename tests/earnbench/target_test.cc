#include "earnbench/target.h"

#include <gtest/gtest.h>

namespace earnbench {
namespace {

TEST(TargetTest, ParsesHostAndPort) {
  auto e = parse_http_url("http://127.0.0.1:8080");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, "8080");
  EXPECT_EQ(e->host_header, "127.0.0.1:8080");

  auto d = parse_http_url("http://localhost/");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->host, "localhost");
  EXPECT_EQ(d->port, "80");
  EXPECT_EQ(d->host_header, "localhost");
}

TEST(TargetTest, RejectsWhatIsNotAPlainHttpBase) {
  for (const char* bad : {"https://127.0.0.1:8443", "127.0.0.1:8080", "http://", "http://h:1/r/abc",
                          "http://h:1/?x=1", "ftp://h", ""}) {
    EXPECT_FALSE(parse_http_url(bad).has_value()) << bad;
  }
}

TEST(TargetTest, BenchCodesHaveAtLeastThreeDigits) {
  EXPECT_EQ(bench_code("b", 0), "b000");
  EXPECT_EQ(bench_code("b", 42), "b042");
  EXPECT_EQ(bench_code("b", 1234), "b1234");
  EXPECT_EQ(bench_code("load-", 7), "load-007");

  auto codes = bench_codes("b", 3, "");
  ASSERT_EQ(codes.size(), 3u);
  EXPECT_EQ(codes[2], "b002");
  EXPECT_EQ(bench_codes("b", 100, "abc123"), std::vector<std::string>{"abc123"});
}

}  // namespace
}  // namespace earnbench
