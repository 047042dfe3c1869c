#include "earnbench/proc_stat.h"

#include <unistd.h>

#include <gtest/gtest.h>

namespace earnbench {
namespace {

TEST(ProcStatTest, CountsFieldsFromTheLastParenthesis) {
  // A command name with blanks and parentheses; utime 150, stime 50, rss 789 pages.
  auto s = parse_proc_stat(
      "4242 (earnd (io) 1) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 50 0 0 20 0 4 0 12345 "
      "99999 789 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->cpu_ticks, 200u);
  EXPECT_EQ(s->rss_pages, 789u);
}

TEST(ProcStatTest, RejectsMalformedLines) {
  EXPECT_FALSE(parse_proc_stat("").has_value());
  EXPECT_FALSE(parse_proc_stat("4242 earnd S 1 2 3").has_value());
  EXPECT_FALSE(parse_proc_stat("4242 (earnd) S 1 2 3 4 5 6 7 8 9 10").has_value());
  EXPECT_FALSE(
      parse_proc_stat("4242 (earnd) S 1 2 3 4 5 6 7 8 9 10 x 50 0 0 20 0 4 0 1 2 3").has_value());
}

TEST(ProcStatTest, ReadsThisProcess) {
  auto u = read_proc_usage(getpid());
  ASSERT_TRUE(u.has_value());
  EXPECT_GT(u->rss_bytes, 0);
  EXPECT_GE(u->cpu_seconds, 0);
  EXPECT_FALSE(read_proc_usage(-1).has_value());
}

}  // namespace
}  // namespace earnbench
