#include "earnd/ingest/bot_classifier.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/regex.hpp>
#include <hs/hs.h>

#include "earnd/common/error.h"

namespace earnd::ingest {
namespace {

// Link-preview fetchers: servers that fetch a shared link to draw a card in a chat or feed. None
// of them is a person clicking. The tokens are chosen so that the same apps' in-app browsers,
// which are people, do not match: "Snapchat/" and "Pinterest/3.x" are in-app browsers, so only
// the preview services' own tokens are listed. meta-externalagent is Meta's crawler, not a
// fetcher for a shared link, and is left to the crawler list.
constexpr std::array<std::string_view, 31> kPreviewPatterns = {
    "facebookexternalhit",  // Facebook, Messenger, Instagram, iMessage, LINE, KakaoTalk.
    "Facebot",
    "Meta-ExternalHit",
    "meta-externalfetcher",
    "Twitterbot",
    "Slackbot",  // Also Slackbot-LinkExpanding.
    "Slack-ImgProxy",
    "WhatsApp",
    "TelegramBot",
    "Discordbot",
    "LinkedInBot",
    "SkypeUriPreview",  // Skype and Microsoft Teams.
    "MicrosoftPreview",
    "Iframely",
    "Embedly",
    "redditbot",
    "Pinterestbot",
    "Pinterest/0\\.",
    "vkShare",
    "Viber",
    "Snap ?URL ?Preview",
    "Google-PageRenderer",
    "Google Page Renderer",
    "kakaotalk-scrap",
    "Mastodon/",
    "Cardyb",  // Bluesky.
    "BlueskyPreviewBot",
    "Synapse \\(bot;",  // Matrix homeservers.
    "Mattermost-Bot",
    "Chatwork LinkPreview",
    "Yahoo Link Preview",
};

// A user agent needs only to be known to match, not where or how often.
constexpr unsigned kHsFlags = HS_FLAG_SINGLEMATCH;

// How many classifiers a thread's scratch space remembers being sized for. A thread that
// alternates between more classifiers than this still works, but re-checks the size on a miss.
constexpr std::size_t kFittedSlots = 4;

// Ids for classifier instances. Unlike addresses, they are never reused, so a thread's record
// that its scratch fits an instance cannot be confused by a new instance at the same address.
std::atomic<std::uint64_t> next_instance_id{1};

// How a crawler-list pattern is matched, from cheapest to most expensive.
enum class Engine : std::uint8_t { kHyperscan, kPrefilter, kRegexOnly };

struct CrawlerPattern {
  std::string text;
  Engine engine = Engine::kHyperscan;
};

// What a Hyperscan match id means.
enum class MatchKind : std::uint8_t { kPreview, kBot, kBotIfConfirmed };

struct MatchAction {
  MatchKind kind;
  std::uint32_t confirm_index;  // Into the confirmation regexes, for kBotIfConfirmed.
};

[[noreturn]] void fail_startup(const std::string& what) {
  throw StartupError("bot classifier: " + what);
}

std::string read_pattern(const boost::json::value& entry, std::size_t index) {
  const auto* object = entry.if_object();
  const auto* pattern = object != nullptr ? object->if_contains("pattern") : nullptr;
  if (pattern == nullptr || !pattern->is_string() || pattern->as_string().empty()) {
    fail_startup("crawler list entry " + std::to_string(index) + " has no string \"pattern\"");
  }
  return std::string(pattern->as_string());
}

std::vector<CrawlerPattern> parse_crawler_list(std::string_view json) {
  boost::system::error_code ec;
  const boost::json::value root = boost::json::parse(json, ec);
  if (ec) {
    fail_startup("crawler list is not valid JSON: " + ec.message());
  }
  const auto* entries = root.if_array();
  if (entries == nullptr || entries->empty()) {
    fail_startup("crawler list is not a non-empty JSON array");
  }

  std::vector<CrawlerPattern> patterns;
  patterns.reserve(entries->size());
  for (std::size_t i = 0; i < entries->size(); ++i) {
    patterns.push_back({.text = read_pattern((*entries)[i], i)});
  }
  return patterns;
}

bool hyperscan_parses(const std::string& pattern, unsigned flags) {
  hs_expr_info_t* info = nullptr;
  hs_compile_error_t* error = nullptr;
  const hs_error_t rc = hs_expression_info(pattern.c_str(), flags, &info, &error);
  std::free(info);
  hs_free_compile_error(error);
  return rc == HS_SUCCESS;
}

// Moves a pattern one step down the engines after Hyperscan refused it as it was.
void demote(CrawlerPattern& pattern) {
  pattern.engine = pattern.engine == Engine::kHyperscan ? Engine::kPrefilter : Engine::kRegexOnly;
}

// Maps the position of an expression in the database (preview patterns first, then the crawler
// patterns that are not left to Boost.Regex alone) back to its crawler pattern.
CrawlerPattern& crawler_pattern_at(std::vector<CrawlerPattern>& patterns, std::size_t expression) {
  std::size_t position = kPreviewPatterns.size();
  for (auto& pattern : patterns) {
    if (pattern.engine != Engine::kRegexOnly && position++ == expression) {
      return pattern;
    }
  }
  fail_startup("Hyperscan reported an error for an unknown expression");
}

// Parsing each expression on its own costs about half a full compile, so it is done only once a
// compile has failed, to find every unsupported pattern in one pass instead of one per compile.
void screen_patterns(std::vector<CrawlerPattern>& patterns) {
  for (auto& pattern : patterns) {
    if (pattern.engine == Engine::kHyperscan && !hyperscan_parses(pattern.text, kHsFlags)) {
      demote(pattern);
    }
    if (pattern.engine == Engine::kPrefilter &&
        !hyperscan_parses(pattern.text, kHsFlags | HS_FLAG_PREFILTER)) {
      demote(pattern);
    }
  }
}

boost::regex compile_fallback(const std::string& pattern) {
  boost::regex regex;
  try {
    regex.assign(pattern, boost::regex::perl);
  } catch (const boost::regex_error& e) {
    fail_startup("pattern \"" + pattern +
                 "\" is rejected by Hyperscan and Boost.Regex: " + e.what());
  }
  if (boost::regex_search("", regex)) {
    fail_startup("pattern \"" + pattern + "\" matches the empty string");
  }
  return regex;
}

// One scratch space per thread, grown with hs_alloc_scratch to fit every classifier the thread
// has used, so memory stays bounded however many classifiers come and go.
struct ThreadScratch {
  hs_scratch_t* scratch = nullptr;
  std::array<std::uint64_t, kFittedSlots> fitted{};  // Instance ids; 0 is an empty slot.
  std::size_t next_slot = 0;

  ThreadScratch() = default;
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;

  ~ThreadScratch() { hs_free_scratch(scratch); }

  bool fits(std::uint64_t id) const noexcept {
    return std::find(fitted.begin(), fitted.end(), id) != fitted.end();
  }

  void remember(std::uint64_t id) noexcept {
    fitted[next_slot] = id;
    next_slot = (next_slot + 1) % kFittedSlots;
  }
};

// Returns this thread's scratch, sized for db, or nullptr when allocation failed. The prototype is
// only read by hs_clone_scratch and never scanned with, so threads may clone it concurrently.
hs_scratch_t* thread_scratch(std::uint64_t id,
                             const hs_scratch_t* prototype,
                             const hs_database_t* db) noexcept {
  thread_local ThreadScratch local;
  if (local.scratch != nullptr && local.fits(id)) {
    return local.scratch;
  }

  const hs_error_t rc = local.scratch == nullptr ? hs_clone_scratch(prototype, &local.scratch)
                                                 : hs_alloc_scratch(db, &local.scratch);
  if (rc != HS_SUCCESS) {
    // hs_alloc_scratch frees the old space when it fails to grow it.
    local.scratch = nullptr;
    local.fitted.fill(0);
    return nullptr;
  }
  local.remember(id);
  return local.scratch;
}

// Boost.Regex may throw (out of memory, or a match too complex); none may leave classify().
bool regex_found(const boost::regex& regex, std::string_view text, bool& failed) noexcept {
  // Reused so that its vector of sub-matches is allocated once per thread, not per search.
  thread_local boost::match_results<const char*> match;
  try {
    return boost::regex_search(text.data(), text.data() + text.size(), match, regex,
                               boost::match_default | boost::match_any);
  } catch (...) {
    failed = true;
    return false;
  }
}

}  // namespace

struct BotClassifier::Impl {
  hs_database_t* db = nullptr;
  hs_scratch_t* prototype = nullptr;
  std::vector<MatchAction> actions;  // Indexed by Hyperscan match id.
  std::vector<boost::regex> confirm_regexes;
  std::vector<boost::regex> regex_only;
  std::vector<std::string> fallback_patterns;
  std::size_t pattern_count = 0;
  std::uint64_t id = next_instance_id.fetch_add(1, std::memory_order_relaxed);
  std::chrono::microseconds build_time{0};
  mutable std::atomic<std::uint64_t> scan_errors{0};

  // Filled by the match callback during one scan.
  struct ScanState {
    const Impl* impl;
    std::string_view user_agent;
    bool preview = false;
    bool bot = false;
    bool failed = false;
  };

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  ~Impl() {
    hs_free_scratch(prototype);
    hs_free_database(db);
  }

  void build(std::string_view json);
  void compile_database(std::vector<CrawlerPattern>& patterns);
  hs_compile_error_t* try_compile(const std::vector<CrawlerPattern>& patterns);
  void compile_fallbacks(const std::vector<CrawlerPattern>& patterns);
  ClickReason classify(std::string_view user_agent) const noexcept;
  ClickReason scan_failed() const noexcept;
  static int on_match(unsigned id,
                      unsigned long long from,
                      unsigned long long to,
                      unsigned flags,
                      void* context) noexcept;
};

void BotClassifier::Impl::build(std::string_view json) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<CrawlerPattern> patterns = parse_crawler_list(json);
  pattern_count = patterns.size();

  compile_database(patterns);
  compile_fallbacks(patterns);
  if (hs_alloc_scratch(db, &prototype) != HS_SUCCESS) {
    fail_startup("cannot allocate Hyperscan scratch space");
  }
  build_time = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start);
}

// Compiles until Hyperscan accepts the database, moving each pattern it refuses to a fallback
// engine. Each round demotes one pattern one step, so the loop ends.
void BotClassifier::Impl::compile_database(std::vector<CrawlerPattern>& patterns) {
  bool screened = false;
  while (hs_compile_error_t* error = try_compile(patterns)) {
    const int expression = error->expression;
    const std::string message = error->message;
    hs_free_compile_error(error);
    if (expression < static_cast<int>(kPreviewPatterns.size())) {
      fail_startup("Hyperscan cannot compile the database: " + message);
    }

    demote(crawler_pattern_at(patterns, static_cast<std::size_t>(expression)));
    if (!screened) {
      screen_patterns(patterns);
      screened = true;
    }
  }
}

// Builds the database from the preview list followed by every crawler pattern Hyperscan is to
// match (see crawler_pattern_at), and the table that maps match ids back to a meaning. Returns
// the compile error, owned by the caller, or nullptr on success.
hs_compile_error_t* BotClassifier::Impl::try_compile(const std::vector<CrawlerPattern>& patterns) {
  std::vector<std::string> texts(kPreviewPatterns.begin(), kPreviewPatterns.end());
  std::vector<unsigned> flags(texts.size(), kHsFlags);
  actions.assign(texts.size(), {.kind = MatchKind::kPreview, .confirm_index = 0});

  std::uint32_t confirm_index = 0;
  for (const auto& pattern : patterns) {
    if (pattern.engine == Engine::kRegexOnly) {
      continue;
    }
    const bool prefilter = pattern.engine == Engine::kPrefilter;
    texts.push_back(pattern.text);
    flags.push_back(prefilter ? kHsFlags | HS_FLAG_PREFILTER : kHsFlags);
    actions.push_back({.kind = prefilter ? MatchKind::kBotIfConfirmed : MatchKind::kBot,
                       .confirm_index = prefilter ? confirm_index++ : 0});
  }

  std::vector<const char*> expressions;
  std::vector<unsigned> ids(texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    expressions.push_back(texts[i].c_str());
    ids[i] = static_cast<unsigned>(i);
  }

  hs_free_database(db);
  db = nullptr;
  hs_compile_error_t* error = nullptr;
  hs_compile_multi(expressions.data(), flags.data(), ids.data(),
                   static_cast<unsigned>(expressions.size()), HS_MODE_BLOCK, nullptr, &db, &error);
  return error;
}

void BotClassifier::Impl::compile_fallbacks(const std::vector<CrawlerPattern>& patterns) {
  for (const auto& pattern : patterns) {
    if (pattern.engine == Engine::kHyperscan) {
      continue;
    }
    auto& target = pattern.engine == Engine::kPrefilter ? confirm_regexes : regex_only;
    target.push_back(compile_fallback(pattern.text));
    fallback_patterns.push_back(pattern.text);
  }
}

int BotClassifier::Impl::on_match(unsigned id,
                                  unsigned long long /*from*/,
                                  unsigned long long /*to*/,
                                  unsigned /*flags*/,
                                  void* context) noexcept {
  auto& state = *static_cast<ScanState*>(context);
  const MatchAction& action = state.impl->actions[id];
  switch (action.kind) {
    case MatchKind::kPreview:
      // A preview match decides the outcome, so the scan can stop.
      state.preview = true;
      return 1;
    case MatchKind::kBot:
      state.bot = true;
      return 0;
    case MatchKind::kBotIfConfirmed:
      if (!state.bot) {
        const auto& regex = state.impl->confirm_regexes[action.confirm_index];
        state.bot = regex_found(regex, state.user_agent, state.failed);
      }
      return 0;
  }
  return 0;
}

ClickReason BotClassifier::Impl::scan_failed() const noexcept {
  // A statistic: no other memory is published with it.
  scan_errors.fetch_add(1, std::memory_order_relaxed);
  return ClickReason::kHuman;
}

ClickReason BotClassifier::Impl::classify(std::string_view user_agent) const noexcept {
  if (user_agent.empty()) {
    return ClickReason::kEmptyUa;
  }
  hs_scratch_t* scratch = thread_scratch(id, prototype, db);
  if (scratch == nullptr) {
    return scan_failed();
  }

  // HTTP parsers cap header size far below 4 GiB; the clamp only keeps the cast honest.
  const auto length = static_cast<unsigned>(std::min<std::size_t>(user_agent.size(), UINT_MAX));
  ScanState state{.impl = this, .user_agent = user_agent};
  const hs_error_t rc = hs_scan(db, user_agent.data(), length, 0, scratch, &on_match, &state);
  if ((rc != HS_SUCCESS && rc != HS_SCAN_TERMINATED) || state.failed) {
    return scan_failed();
  }
  if (state.preview) {
    return ClickReason::kPreview;
  }

  for (const auto& regex : regex_only) {
    if (state.bot) {
      break;
    }
    state.bot = regex_found(regex, user_agent, state.failed);
  }
  if (state.failed) {
    return scan_failed();
  }
  return state.bot ? ClickReason::kBotUa : ClickReason::kHuman;
}

BotClassifier::BotClassifier(std::string_view crawler_list_json) : impl_(std::make_unique<Impl>()) {
  impl_->build(crawler_list_json);
}

BotClassifier::~BotClassifier() = default;

std::unique_ptr<BotClassifier> BotClassifier::from_embedded() {
  return std::make_unique<BotClassifier>(embedded_crawler_list());
}

ClickReason BotClassifier::classify(std::string_view user_agent) const noexcept {
  return impl_->classify(user_agent);
}

std::size_t BotClassifier::pattern_count() const noexcept {
  return impl_->pattern_count;
}

std::size_t BotClassifier::preview_pattern_count() const noexcept {
  return kPreviewPatterns.size();
}

std::size_t BotClassifier::fallback_count() const noexcept {
  return impl_->fallback_patterns.size();
}

std::span<const std::string> BotClassifier::fallback_patterns() const noexcept {
  return impl_->fallback_patterns;
}

std::uint64_t BotClassifier::scan_error_count() const noexcept {
  return impl_->scan_errors.load(std::memory_order_relaxed);
}

std::chrono::microseconds BotClassifier::build_time() const noexcept {
  return impl_->build_time;
}

}  // namespace earnd::ingest
