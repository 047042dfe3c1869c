#pragma once

// Classifies the User-Agent header of a referral-link click as a link-preview fetcher, a crawler
// from the crawler-user-agents list, or a human. Every pattern is compiled once, at startup, into
// one Hyperscan database, so each classification is a single pass over the user agent.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "earnd/common/click.h"

namespace earnd::ingest {

// The text of crawler-user-agents.json as linked into the binary at build time (the file named by
// EARND_CRAWLER_LIST_PATH). The view is valid for the whole run. Thread-safe; does not allocate.
std::string_view embedded_crawler_list() noexcept;

// Decides whether a click's user agent belongs to a person, a link-preview fetcher or a crawler.
//
// Two pattern sets are matched in the same scan:
//   - a short built-in list of link-preview fetchers (chat and social apps that fetch a link to
//     show a card: facebookexternalhit, Twitterbot, Slackbot, WhatsApp, Discordbot, ...);
//   - every `pattern` of a crawler-user-agents.json list (unanchored, case-sensitive, PCRE
//     syntax).
// A preview match wins over a crawler match, since most preview fetchers are on the crawler list
// too.
//
// Patterns Hyperscan cannot compile are never dropped. Each one is compiled with
// HS_FLAG_PREFILTER where Hyperscan accepts that (a prefilter hit is then confirmed with
// Boost.Regex), and otherwise matched with Boost.Regex alone on every call. fallback_count() and
// fallback_patterns() report them; the crawler list in assets/ needs none.
//
// Thread-safety: after construction the object is immutable, and classify() may be called from
// any number of threads at once. Each thread keeps one Hyperscan scratch space that grows to fit
// every classifier the thread has used; it is freed when the thread exits.
class BotClassifier {
 public:
  // Parses the crawler list (a JSON array of objects with a string `pattern`) and compiles it.
  // The text is not referenced after the constructor returns. Takes about 100 ms for the
  // 1,500-pattern list. Throws StartupError when the text is not such an array, when the list
  // has no patterns, when a pattern is rejected by both Hyperscan and Boost.Regex, or when a
  // pattern matches the empty string (it would flag every click).
  explicit BotClassifier(std::string_view crawler_list_json);

  ~BotClassifier();

  BotClassifier(const BotClassifier&) = delete;
  BotClassifier& operator=(const BotClassifier&) = delete;

  // Builds a classifier from embedded_crawler_list(). Throws StartupError as the constructor.
  static std::unique_ptr<BotClassifier> from_embedded();

  // Returns kEmptyUa for an empty user agent, kPreview for a link-preview fetcher, kBotUa for a
  // crawler-list match and kHuman otherwise. Never returns another reason.
  //
  // The first call on a thread allocates that thread's scratch space (and a call with a classifier
  // the thread has not used before may grow it); later calls do not allocate, unless a fallback
  // pattern has to be run (see LIMIT below).
  //
  // A Hyperscan or Boost.Regex failure cannot be caused by the user agent: it means the process
  // is out of memory or the scratch space is broken. Such a call fails open, returning kHuman (a
  // bot counted once is cheaper than a referrer's real click silently dropped), and increments
  // scan_error_count(), which should be exported as a metric and alerted on.
  //
  // LIMIT: a fallback pattern is run with Boost.Regex, which may allocate and costs microseconds
  // per call. Matters only for lists with patterns Hyperscan rejects; rewriting such a pattern in
  // syntax Hyperscan accepts removes it.
  ClickReason classify(std::string_view user_agent) const noexcept;

  // The number of patterns taken from the crawler list; the preview list is not included.
  std::size_t pattern_count() const noexcept;

  // The number of built-in link-preview patterns.
  std::size_t preview_pattern_count() const noexcept;

  // The number of crawler-list patterns Hyperscan could not compile as written; they are matched
  // through the fallback described above. fallback_patterns() lists them, for the startup log.
  std::size_t fallback_count() const noexcept;

  std::span<const std::string> fallback_patterns() const noexcept;

  // The number of classify() calls that failed inside Hyperscan or Boost.Regex and returned
  // kHuman. Thread-safe; a relaxed counter.
  std::uint64_t scan_error_count() const noexcept;

  // Wall time the constructor spent parsing and compiling, for the startup log.
  std::chrono::microseconds build_time() const noexcept;

 private:
  struct Impl;

  std::unique_ptr<Impl> impl_;
};

}  // namespace earnd::ingest
