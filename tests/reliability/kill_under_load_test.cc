// Kill under load: clients click and report signups while earnd is killed with SIGKILL at a
// random moment, several rounds in a row on the same data, and finally stopped with SIGTERM.
// The test keeps its own record of every 302 that carried a click id and of every conversion
// answered 201. Afterwards each of them must be stored exactly once: every click in the export,
// every conversion known to explain, a repeat of it answered as a duplicate, and one reward
// each in the ledger.
//
// EARND_RELIABILITY_ROUNDS (default 3) sets the SIGKILL rounds; EARND_RELIABILITY_SEED replays
// the kill moments.

#include <signal.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "reliability_fixture.h"

namespace earnd::reliability {
namespace {

using namespace std::chrono_literals;
using integration::click_id_of;
using integration::Endpoint;
using integration::make_request;

// Client threads that click (kClickThreads) and report signups (kConversionThreads) on kept-alive
// connections, reconnecting after an error, until told to stop or the server is gone.
class MixedLoad {
 public:
  static constexpr int kClickThreads = 3;
  static constexpr int kConversionThreads = 2;
  static constexpr auto kMaxDuration = 10s;

  MixedLoad(Endpoint endpoint, std::string round, std::string click_id, integration::Headers conv)
      : endpoint_(std::move(endpoint)),
        round_(std::move(round)),
        click_id_(std::move(click_id)),
        conversion_headers_(std::move(conv)),
        deadline_(std::chrono::steady_clock::now() + kMaxDuration) {
    for (int i = 0; i < kClickThreads; ++i) {
      threads_.emplace_back([this, i] { click(i); });
    }
    for (int i = 0; i < kConversionThreads; ++i) {
      threads_.emplace_back([this, i] { convert(i); });
    }
  }

  ~MixedLoad() { stop(); }

  void stop() {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) {
        t.join();
      }
    }
  }

  // Waits until both kinds have been acknowledged at least once (bounded by the deadline).
  void wait_for_traffic() {
    while ((clicks_.load() == 0 || conversions_.load() == 0) && !over()) {
      std::this_thread::sleep_for(5ms);
    }
  }

  // Call after stop().
  const std::vector<std::string>& acked_clicks() const { return acked_clicks_; }

  const std::vector<std::string>& acked_conversions() const { return acked_conversions_; }

  int unexpected() const { return unexpected_.load(); }

 private:
  bool over() const { return stop_.load() || std::chrono::steady_clock::now() > deadline_; }

  void click(int thread) {
    std::string request =
        make_request("GET", "/r/ana",
                     {{"User-Agent", std::string(integration::kBrowserUa) + " k/" + round_ + "/" +
                                         std::to_string(thread)}});
    std::vector<std::string> ids;
    while (!over()) {
      HttpConnection c(endpoint_, 2s);
      if (!c.connected()) {
        break;  // killed: nothing listens any more
      }
      while (!over() && c.send(request)) {
        HttpResponse r = c.read_response();
        if (r.status == 0) {
          break;  // no answer: nothing was acknowledged
        }
        if (r.status != 302) {
          unexpected_.fetch_add(1);
          break;
        }
        if (std::string id = click_id_of(r); !id.empty()) {
          ids.push_back(std::move(id));
          clicks_.fetch_add(1);
        }
      }
    }
    std::lock_guard lock(mutex_);
    acked_clicks_.insert(acked_clicks_.end(), ids.begin(), ids.end());
  }

  void convert(int thread) {
    std::vector<std::string> ids;
    int n = 0;
    while (!over()) {
      HttpConnection c(endpoint_, 2s);
      if (!c.connected()) {
        break;
      }
      while (!over()) {
        std::string event =
            "ev_" + round_ + "_" + std::to_string(thread) + "_" + std::to_string(n++);
        HttpResponse r = c.request("POST", "/v1/conversions", conversion_headers_,
                                   signup_body(event, click_id_));
        if (r.status == 0) {
          break;
        }
        if (r.status != 201) {
          unexpected_.fetch_add(1);
          break;
        }
        ids.push_back(event);
        conversions_.fetch_add(1);
      }
    }
    std::lock_guard lock(mutex_);
    acked_conversions_.insert(acked_conversions_.end(), ids.begin(), ids.end());
  }

  Endpoint endpoint_;
  std::string round_;
  std::string click_id_;
  integration::Headers conversion_headers_;
  std::chrono::steady_clock::time_point deadline_;
  std::atomic<bool> stop_{false};
  std::atomic<int> clicks_{0};
  std::atomic<int> conversions_{0};
  std::atomic<int> unexpected_{0};
  std::mutex mutex_;
  std::vector<std::string> acked_clicks_;
  std::vector<std::string> acked_conversions_;
  std::vector<std::thread> threads_;
};

class KillUnderLoadTest : public ReliabilityTest {
 protected:
  // One round: load starts, and after a random delay the server gets signal_number. The
  // acknowledged events are added to the test's record.
  void run_round(const std::string& name, int signal_number, std::mt19937_64& rng) {
    HttpResponse first = visit("/r/ana");
    ASSERT_EQ(first.status, 302) << first.error;
    std::string click_id = click_id_of(first);
    clicks_.push_back(click_id);

    MixedLoad load(public_endpoint(), name, click_id, conversion_headers());
    load.wait_for_traffic();
    std::uniform_int_distribution<int> delay_ms(50, 600);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    if (signal_number == SIGKILL) {
      server().kill();
    } else {
      server().signal(signal_number);
      exit_code_ = server().wait(20s);
    }
    load.stop();
    EXPECT_EQ(load.unexpected(), 0) << "answers other than 302/201 in round " << name;
    clicks_.insert(clicks_.end(), load.acked_clicks().begin(), load.acked_clicks().end());
    conversions_.insert(conversions_.end(), load.acked_conversions().begin(),
                        load.acked_conversions().end());
  }

  // Every acknowledged click is in the export, and no click id twice.
  std::pair<int, int> check_clicks() {
    std::map<std::string, int> exported;
    for (const auto& row : export_clicks()) {
      exported[row.id] += 1;
    }
    int lost = 0, duplicated = 0;
    for (const auto& id : clicks_) {
      auto it = exported.find(id);
      lost += it == exported.end();
      duplicated += it != exported.end() && it->second > 1;
    }
    return {lost, duplicated};
  }

  // Every acknowledged conversion is known, answered as a duplicate when sent again, and has
  // exactly one reward.
  std::pair<int, int> check_conversions() {
    auto rewards = rewards_by_event();
    int lost = 0, duplicated = 0;
    HttpConnection c(public_endpoint());
    for (const auto& event : conversions_) {
      HttpResponse again = c.request("POST", "/v1/conversions", conversion_headers(),
                                     signup_body(event, clicks_.front()));
      bool known =
          again.status == 200 && again.body.find("\"duplicate\":true") != std::string::npos;
      lost += !known;
      duplicated += rewards[event] > 1;
      EXPECT_EQ(rewards[event], 1) << event << ": " << again.status << " " << again.body;
    }
    return {lost, duplicated};
  }

  std::vector<std::string> clicks_;
  std::vector<std::string> conversions_;
  int exit_code_ = -2;
};

TEST_F(KillUnderLoadTest, StoresEveryAcknowledgedEventOnceAcrossKillsAndStop) {
  auto seed = reliability_seed();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  int rounds = reliability_rounds(3);
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());

  for (int round = 0; round < rounds; ++round) {
    ASSERT_NO_FATAL_FAILURE(run_round("k" + std::to_string(round), SIGKILL, rng));
    ASSERT_NO_FATAL_FAILURE(start_server());
  }
  ASSERT_NO_FATAL_FAILURE(run_round("term", SIGTERM, rng));
  EXPECT_EQ(exit_code_, 0) << server().log_text();

  auto [clicks_lost, clicks_dup] = check_clicks();
  ASSERT_NO_FATAL_FAILURE(start_server());
  auto [conv_lost, conv_dup] = check_conversions();
  EXPECT_EQ(stop_server(), 0);

  EXPECT_GT(clicks_.size(), static_cast<std::size_t>(rounds));
  EXPECT_GT(conversions_.size(), 0u);
  EXPECT_EQ(clicks_lost, 0) << "of " << clicks_.size() << " acknowledged clicks";
  EXPECT_EQ(clicks_dup, 0);
  EXPECT_EQ(conv_lost, 0) << "of " << conversions_.size() << " acknowledged conversions";
  EXPECT_EQ(conv_dup, 0);
  report_figures("kill_under_load",
                 "seed=" + std::to_string(seed) + " sigkill_rounds=" + std::to_string(rounds) +
                     " sigterm_rounds=1 clicks_acknowledged=" + std::to_string(clicks_.size()) +
                     " clicks_lost=" + std::to_string(clicks_lost) +
                     " clicks_duplicated=" + std::to_string(clicks_dup) +
                     " conversions_acknowledged=" + std::to_string(conversions_.size()) +
                     " conversions_lost=" + std::to_string(conv_lost) + " conversions_duplicated=" +
                     std::to_string(conv_dup) + " sigterm_exit=" + std::to_string(exit_code_));
}

}  // namespace
}  // namespace earnd::reliability
