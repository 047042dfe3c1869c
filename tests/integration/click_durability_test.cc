// Clicks answered with a 302 are on disk: after a clean stop, `earnctl export clicks` lists
// each of them, with the click id the visitor was sent and the reason it was classified with,
// across restarts and in both durability modes.

#include <algorithm>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "server_fixture.h"

namespace earnd::integration {
namespace {

constexpr std::string_view kFirefoxUa =
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
constexpr std::string_view kSafariUa =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";

// What a click was made as: its user agent, method, and the reason earnd should store.
struct ClickKind {
  std::string_view user_agent;
  std::string_view method;
  std::string_view reason;
};

constexpr ClickKind kChrome{kBrowserUa, "GET", ""};
constexpr ClickKind kFirefox{kFirefoxUa, "GET", ""};
constexpr ClickKind kSafari{kSafariUa, "GET", ""};
constexpr ClickKind kGooglebot{kGooglebotUa, "GET", "bot_ua"};
constexpr ClickKind kHead{kFirefoxUa, "HEAD", "head"};

class ClickDurabilityTest : public EarndTest {
 protected:
  void start_with_program(std::vector<std::string> extra_args = {}) {
    ASSERT_NO_FATAL_FAILURE(start_server(std::move(extra_args)));
    create_program();
    referrer_id_ = enrol("u_17", "ana");
    ASSERT_FALSE(referrer_id_.empty());
  }

  // Makes count clicks of kind on one kept-alive connection and remembers each click id with
  // the reason expected for it.
  void click(int count, const ClickKind& kind) {
    HttpConnection c(public_endpoint());
    ASSERT_TRUE(c.connected()) << c.error();
    for (int i = 0; i < count; ++i) {
      HttpResponse r = c.request(kind.method, "/r/ana?utm_source=it",
                                 {{"User-Agent", std::string(kind.user_agent)}});
      ASSERT_EQ(r.status, 302) << "click " << i << ": " << r.error;
      std::string id = click_id_of(r);
      ASSERT_TRUE(looks_like_click_id(id)) << r.header("Location").value_or("");
      ASSERT_TRUE(sent_.emplace(id, std::string(kind.reason)).second) << "repeated id " << id;
    }
  }

  // The mix of 300 GET clicks (browsers and Googlebot) plus 10 HEAD requests.
  void click_mix() {
    ASSERT_NO_FATAL_FAILURE(click(100, kChrome));
    ASSERT_NO_FATAL_FAILURE(click(40, kGooglebot));
    ASSERT_NO_FATAL_FAILURE(click(70, kFirefox));
    ASSERT_NO_FATAL_FAILURE(click(50, kSafari));
    ASSERT_NO_FATAL_FAILURE(click(40, kGooglebot));
    ASSERT_NO_FATAL_FAILURE(click(10, kHead));
  }

  // Checks that the export holds exactly the clicks sent, each with its expected reason.
  void expect_export_matches_sent(const std::vector<ExportedClick>& rows) {
    EXPECT_EQ(rows.size(), sent_.size());
    std::map<std::string, std::string> exported;
    for (const ExportedClick& row : rows) {
      EXPECT_TRUE(exported.emplace(row.id, row.reason).second) << "exported twice: " << row.id;
      EXPECT_EQ(row.program, kProgramId);
      EXPECT_EQ(row.referrer_id, referrer_id_);
      EXPECT_EQ(row.code, "ana");
    }
    EXPECT_EQ(exported, sent_);
    EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      return a.ts_ms < b.ts_ms;
    })) << "export is not oldest first";
  }

  static std::map<std::string, int> reason_counts(const std::vector<ExportedClick>& rows) {
    std::map<std::string, int> counts;
    for (const ExportedClick& row : rows) {
      ++counts[row.reason];
    }
    return counts;
  }

  std::map<std::string, std::string> sent_;  // click id -> expected reason
  std::string referrer_id_;
};

TEST_F(ClickDurabilityTest, ExportsEveryClickAfterStop) {
  ASSERT_NO_FATAL_FAILURE(start_with_program());
  ASSERT_NO_FATAL_FAILURE(click_mix());
  ASSERT_EQ(stop_server(), 0);

  std::vector<ExportedClick> rows = export_clicks();

  ASSERT_EQ(rows.size(), 310u);
  expect_export_matches_sent(rows);
  EXPECT_EQ(reason_counts(rows),
            (std::map<std::string, int>{{"", 220}, {"bot_ua", 80}, {"head", 10}}));
  // One visitor per user agent on loopback: only its first click on the link is unique.
  EXPECT_EQ(std::count_if(rows.begin(), rows.end(), [](const auto& r) { return r.unique; }), 4);
}

TEST_F(ClickDurabilityTest, KeepsClicksAcrossRestart) {
  ASSERT_NO_FATAL_FAILURE(start_with_program());
  ASSERT_NO_FATAL_FAILURE(click_mix());
  ASSERT_EQ(stop_server(), 0);
  ASSERT_EQ(export_clicks().size(), 310u);

  // The same data directory: programs, links and clicks come back.
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(click(30, kSafari));
  ASSERT_NO_FATAL_FAILURE(click(20, kGooglebot));
  ASSERT_EQ(stop_server(), 0);

  std::vector<ExportedClick> rows = export_clicks();

  ASSERT_EQ(rows.size(), 360u);
  expect_export_matches_sent(rows);
  EXPECT_EQ(reason_counts(rows),
            (std::map<std::string, int>{{"", 250}, {"bot_ua", 100}, {"head", 10}}));
}

TEST_F(ClickDurabilityTest, ExportsEveryClickAfterStopInAsyncDurability) {
  ASSERT_NO_FATAL_FAILURE(start_with_program({"--durability", "async"}));
  ASSERT_NE(server().log_text().find("durability=async"), std::string::npos);
  ASSERT_NO_FATAL_FAILURE(click(150, kChrome));
  ASSERT_NO_FATAL_FAILURE(click(50, kGooglebot));
  ASSERT_EQ(stop_server(), 0);

  std::vector<ExportedClick> rows = export_clicks();

  ASSERT_EQ(rows.size(), 200u);
  expect_export_matches_sent(rows);
  EXPECT_EQ(reason_counts(rows), (std::map<std::string, int>{{"", 150}, {"bot_ua", 50}}));
}

// The offline commands read a data directory; a mistyped one is an error, not a new empty store
// (which would report zero clicks as if that were the answer).
TEST(EarnctlOfflineTest, RefusesADataDirectoryThatDoesNotExist) {
  TempDir scratch;
  std::filesystem::path missing = scratch.path() / "no-such-data";
  std::string earnctl = (std::filesystem::path(EARND_BIN_DIR) / "earnctl").string();
  for (std::vector<std::string> args :
       {std::vector<std::string>{"stats", "--data-dir", missing.string()},
        std::vector<std::string>{"export", "clicks", "--data-dir", missing.string()},
        std::vector<std::string>{"attribute", "--data-dir", missing.string(), "--conversions",
                                 "/dev/null", "--model", "last_click", "--window", "30d", "--out",
                                 (scratch.path() / "out.csv").string()}}) {
    args.insert(args.begin(), earnctl);
    auto r = run_command(args, scratch.path());
    EXPECT_NE(r.exit_code, 0) << args[1];
    EXPECT_NE(r.err.find("does not exist"), std::string::npos) << args[1] << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(missing)) << args[1] << " created it";
  }
}

}  // namespace
}  // namespace earnd::integration
