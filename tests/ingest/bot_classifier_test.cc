#include "earnd/ingest/bot_classifier.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <gtest/gtest.h>

#include "earnd/common/error.h"

#ifndef EARND_TEST_DATA_DIR
#error "EARND_TEST_DATA_DIR must name the shared test data directory, as a string literal"
#endif

namespace earnd::ingest {
namespace {

using Strings = std::vector<std::string>;

// The embedded list takes about 100 ms to compile, so every test shares one classifier.
const BotClassifier& embedded() {
  static const std::unique_ptr<BotClassifier> classifier = BotClassifier::from_embedded();
  return *classifier;
}

std::string read_data_file(std::string_view name) {
  const std::string path = std::string(EARND_TEST_DATA_DIR) + "/" + std::string(name);
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Reads a JSON array of strings, such as top-user-agents.json.
Strings read_string_array(std::string_view name) {
  const boost::json::value list = boost::json::parse(read_data_file(name));
  Strings out;
  for (const auto& item : list.as_array()) {
    out.emplace_back(item.as_string());
  }
  return out;
}

Strings crawler_instances() {
  const boost::json::value list = boost::json::parse(read_data_file("crawler-user-agents.json"));
  Strings out;
  for (const auto& entry : list.as_array()) {
    for (const auto& instance : entry.as_object().at("instances").as_array()) {
      out.emplace_back(instance.as_string());
    }
  }
  return out;
}

// Unquotes a YAML scalar as uap-core writes it: single quotes with '' for a quote, or double
// quotes without escapes.
std::string unquote_yaml(std::string_view value) {
  if (value.size() < 2) {
    return std::string(value);
  }
  const char quote = value.front();
  std::string out(value.substr(1, value.size() - 2));
  for (std::size_t at = 0; quote == '\'' && (at = out.find("''", at)) != std::string::npos; ++at) {
    out.erase(at, 1);
  }
  return out;
}

// uap-core browser families that are ordinary browsers, not in-app browsers, tools or bots.
constexpr std::array<std::string_view, 18> kBrowserFamilies = {"Chrome",
                                                               "Chrome Mobile",
                                                               "Chrome Mobile iOS",
                                                               "Chrome Mobile WebView",
                                                               "Firefox",
                                                               "Firefox Mobile",
                                                               "Firefox iOS",
                                                               "Safari",
                                                               "Mobile Safari",
                                                               "Mobile Safari UI/WKWebView",
                                                               "Edge",
                                                               "Edge Mobile",
                                                               "Opera",
                                                               "Opera Mobile",
                                                               "Brave",
                                                               "Vivaldi",
                                                               "Yandex Browser",
                                                               "Samsung Internet"};

bool is_ordinary_browser(std::string_view family) {
  return std::find(kBrowserFamilies.begin(), kBrowserFamilies.end(), family) !=
         kBrowserFamilies.end();
}

// The user agents of the uap-core cases whose family is an ordinary browser. uap-core writes each
// case as a `user_agent_string:` line followed by a `family:` line.
Strings uap_browser_cases() {
  constexpr std::string_view kUaKey = "  - user_agent_string: ";
  constexpr std::string_view kFamilyKey = "    family: ";

  std::istringstream yaml(read_data_file("uap-core-test_ua.yaml"));
  Strings out;
  std::string line;
  std::string user_agent;
  while (std::getline(yaml, line)) {
    const std::string_view text = line;
    if (text.starts_with(kUaKey)) {
      user_agent = unquote_yaml(text.substr(kUaKey.size()));
    } else if (text.starts_with(kFamilyKey) &&
               is_ordinary_browser(unquote_yaml(text.substr(kFamilyKey.size())))) {
      out.push_back(user_agent);
    }
  }
  return out;
}

// The user agents in uas whose classification is not what want_human asks: human, or any of
// the non-human reasons.
Strings mismatches(const Strings& uas, bool want_human) {
  Strings out;
  for (const auto& ua : uas) {
    if ((embedded().classify(ua) == ClickReason::kHuman) != want_human) {
      out.push_back(ua);
    }
  }
  return out;
}

std::string first_few(const Strings& uas) {
  std::string out;
  for (std::size_t i = 0; i < uas.size() && i < 5; ++i) {
    out += "\n  " + uas[i];
  }
  return out;
}

std::vector<ClickReason> classify_all(const BotClassifier& classifier, const Strings& uas) {
  std::vector<ClickReason> out;
  out.reserve(uas.size());
  for (const auto& ua : uas) {
    out.push_back(classifier.classify(ua));
  }
  return out;
}

TEST(BotClassifierTest, LoadsEveryPatternOfTheEmbeddedList) {
  EXPECT_EQ(embedded_crawler_list(), read_data_file("crawler-user-agents.json"));
  EXPECT_EQ(embedded().pattern_count(), 1498u);
  EXPECT_GT(embedded().preview_pattern_count(), 20u);
  EXPECT_EQ(embedded().fallback_count(), 0u);
  EXPECT_EQ(embedded().scan_error_count(), 0u);
}

TEST(BotClassifierTest, FlagsEveryCrawlerListInstance) {
  const Strings instances = crawler_instances();
  const Strings missed = mismatches(instances, /*want_human=*/false);

  EXPECT_EQ(instances.size(), 2116u);
  EXPECT_EQ(instances.size() - missed.size(), instances.size()) << first_few(missed);
}

TEST(BotClassifierTest, DoesNotFlagTopBrowserUserAgents) {
  const struct {
    std::string_view file;
    std::size_t count;
  } kLists[] = {{"top-user-agents.json", 100},
                {"top-user-agents-desktop.json", 72},
                {"top-user-agents-mobile.json", 28}};

  for (const auto& list : kLists) {
    const Strings uas = read_string_array(list.file);
    const Strings flagged = mismatches(uas, /*want_human=*/true);
    EXPECT_EQ(uas.size(), list.count) << list.file;
    EXPECT_EQ(flagged.size(), 0u) << list.file << first_few(flagged);
  }
}

TEST(BotClassifierTest, FlagsOnlyTheKnownBotAmongUapCoreBrowserCases) {
  const Strings uas = uap_browser_cases();
  const Strings flagged = mismatches(uas, /*want_human=*/true);

  // uap-core names this one by the browser it imitates, but it is Google's page snapshot bot.
  const Strings expected = {
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko; Google Web Preview) "
      "Chrome/27.0 .1453 Safari/537.36."};
  EXPECT_EQ(uas.size(), 82u);
  EXPECT_EQ(flagged, expected) << first_few(flagged);
}

TEST(BotClassifierTest, MapsLinkPreviewFetchersToPreview) {
  for (const char* ua : {
           "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
           "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
           "WhatsApp/2.23.20.0 A",
           "TelegramBot (like TwitterBot)",
           "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
           "Twitterbot/1.0",
           "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
           "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
           "Snap URL Preview Service; bot; snapchat; https://developers.snap.com/robots",
       }) {
    EXPECT_EQ(embedded().classify(ua), ClickReason::kPreview) << ua;
  }
}

TEST(BotClassifierTest, MapsCrawlersAndHttpLibrariesToBotUa) {
  for (const char* ua : {
           "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
           "curl/8.0.1",
           "python-requests/2.31.0",
           "meta-externalagent/1.1 "
           "(+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
       }) {
    EXPECT_EQ(embedded().classify(ua), ClickReason::kBotUa) << ua;
  }
}

TEST(BotClassifierTest, KeepsInAppBrowsersOfPreviewAppsHuman) {
  for (const char* ua : {
           "Mozilla/5.0 (iPhone; CPU iPhone OS 11_2_6 like Mac OS X) AppleWebKit/604.5.6 (KHTML, "
           "like Gecko) Snapchat/10.38.0.25 (iPhone8,1; iOS 11.2.6; gzip)",
           "Mozilla/5.0 (iPhone; CPU iPhone OS 6_1_4 like Mac OS X) AppleWebKit/536.26 (KHTML, "
           "like "
           "Gecko) Mobile/10B350 [Pinterest/iOS]",
       }) {
    EXPECT_EQ(embedded().classify(ua), ClickReason::kHuman) << ua;
  }
}

TEST(BotClassifierTest, MapsEmptyUserAgentToEmptyUa) {
  EXPECT_EQ(embedded().classify(""), ClickReason::kEmptyUa);
  EXPECT_EQ(embedded().classify(std::string_view()), ClickReason::kEmptyUa);
}

TEST(BotClassifierTest, GivesTheSameResultsFromFourThreads) {
  Strings uas = crawler_instances();
  const Strings browsers = read_string_array("top-user-agents.json");
  uas.insert(uas.end(), browsers.begin(), browsers.end());
  const std::vector<ClickReason> expected = classify_all(embedded(), uas);

  std::vector<std::vector<ClickReason>> results(4);
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&result, &uas] {
      for (int round = 0; round < 3; ++round) {
        result = classify_all(embedded(), uas);
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  for (const auto& result : results) {
    EXPECT_EQ(result, expected);
  }
}

TEST(BotClassifierTest, KeepsInstancesApartOnOneThread) {
  const BotClassifier mozilla(R"([{"pattern": "^Mozilla/"}])");
  const std::string chrome =
      "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126 "
      "Safari/537.36";

  // Alternating makes the thread's scratch space serve both databases in turn.
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(mozilla.classify(chrome), ClickReason::kBotUa);
    EXPECT_EQ(embedded().classify(chrome), ClickReason::kHuman);
    EXPECT_EQ(mozilla.classify("curl/8.0.1"), ClickReason::kHuman);
    EXPECT_EQ(embedded().classify("curl/8.0.1"), ClickReason::kBotUa);
  }
  EXPECT_EQ(mozilla.pattern_count(), 1u);
}

TEST(BotClassifierTest, UsesPrefilterAndConfirmsForUnsupportedSyntax) {
  // Hyperscan has no back-references or lookbehind, but accepts both as prefilters.
  const BotClassifier classifier(R"([{"pattern": "(spider)-\\1"},
                                     {"pattern": "(?<=Crawler/)beta"},
                                     {"pattern": "Googlebot"}])");

  EXPECT_EQ(classifier.pattern_count(), 3u);
  ASSERT_EQ(classifier.fallback_count(), 2u);
  EXPECT_EQ(classifier.fallback_patterns()[0], "(spider)-\\1");
  EXPECT_EQ(classifier.classify("x spider-spider y"), ClickReason::kBotUa);
  EXPECT_EQ(classifier.classify("x spider-spidex y"), ClickReason::kHuman);
  EXPECT_EQ(classifier.classify("Crawler/beta"), ClickReason::kBotUa);
  EXPECT_EQ(classifier.classify("Crawler/ beta"), ClickReason::kHuman);
  EXPECT_EQ(classifier.classify("Googlebot/2.1"), ClickReason::kBotUa);
  EXPECT_EQ(classifier.scan_error_count(), 0u);
}

TEST(BotClassifierTest, UsesBoostRegexAloneWhenPrefilterIsRefused) {
  // Hyperscan rejects subroutine calls even as a prefilter; Boost.Regex supports them.
  const BotClassifier classifier(R"([{"pattern": "^(<(?1)?>)bot"}, {"pattern": "curl/"}])");

  ASSERT_EQ(classifier.fallback_count(), 1u);
  EXPECT_EQ(classifier.classify("<>bot 1.0"), ClickReason::kBotUa);
  EXPECT_EQ(classifier.classify("<<>>bot 1.0"), ClickReason::kBotUa);
  EXPECT_EQ(classifier.classify("<<>bot 1.0"), ClickReason::kHuman);
  EXPECT_EQ(classifier.classify("curl/8.0.1"), ClickReason::kBotUa);
  EXPECT_EQ(classifier.classify("Twitterbot/1.0"), ClickReason::kPreview);
  EXPECT_EQ(classifier.scan_error_count(), 0u);
}

TEST(BotClassifierTest, RejectsUnusableLists) {
  for (const char* json : {
           "",
           "{\"pattern\": \"bot\"}",
           "[]",
           "[{\"url\": \"http://example.com\"}]",
           "[{\"pattern\": \"\"}]",
           "[{\"pattern\": 42}]",
           "[{\"pattern\": \"(unclosed\"}]",
           "[{\"pattern\": \"a*\"}]",
       }) {
    EXPECT_THROW(BotClassifier{json}, StartupError) << json;
  }
}

}  // namespace
}  // namespace earnd::ingest
