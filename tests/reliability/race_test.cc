// Duplicates and races: hundreds of copies of one conversion postback arriving at once give one
// conversion and one reward; admin changes to a link while it is being clicked never show a
// redirect a mix of the old and the new destination.

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "reliability_fixture.h"

namespace earnd::reliability {
namespace {

using namespace std::chrono_literals;
using integration::click_id_of;

constexpr int kCopies = 300;  // concurrent copies of the postback
constexpr int kSenderThreads = 6;
constexpr int kLinkChanges = 200;  // PATCHes of the link's destination
constexpr int kClickThreads = 3;

class RaceTest : public ReliabilityTest {};

TEST_F(RaceTest, ConcurrentCopiesOfOnePostbackMakeOneConversionAndOneReward) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  std::string click_id = click_id_of(visit("/r/ana"));
  ASSERT_FALSE(click_id.empty());
  std::string request = integration::make_request(
      "GET", "/postback?key=" + program_key_ +
                 "&event_id=ord_same&type=signup&click_id=" + click_id + "&customer_id=cus_1");

  // Every connection is open and every request written before any answer is read.
  std::vector<std::unique_ptr<HttpConnection>> conns;
  for (int i = 0; i < kCopies; ++i) {
    conns.push_back(std::make_unique<HttpConnection>(public_endpoint()));
    ASSERT_TRUE(conns.back()->connected()) << conns.back()->error();
  }
  std::atomic<int> created{0}, duplicates{0}, other{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < kSenderThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = t; i < kCopies; i += kSenderThreads) {
        conns[i]->send(request);
      }
      for (int i = t; i < kCopies; i += kSenderThreads) {
        HttpResponse r = conns[i]->read_response();
        if (r.status == 201) {
          created.fetch_add(1);
        } else if (r.status == 200 && r.body.find("\"duplicate\":true") != std::string::npos) {
          duplicates.fetch_add(1);
        } else {
          other.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : senders) {
    t.join();
  }

  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(duplicates.load(), kCopies - 1);
  EXPECT_EQ(other.load(), 0);
  auto rewards = rewards_by_event();
  EXPECT_EQ(rewards.size(), 1u);
  EXPECT_EQ(rewards["ord_same"], 1);
  EXPECT_EQ(admin("GET", "/v1/conversions/ord_same/explain").status, 200);
  report_figures("postback_copies", "copies=" + std::to_string(kCopies) +
                                        " created=" + std::to_string(created.load()) +
                                        " duplicates=" + std::to_string(duplicates.load()) +
                                        " rewards=" + std::to_string(rewards["ord_same"]));
}

TEST_F(RaceTest, LinkChangesNeverShowAHalfWrittenLinkToRedirects) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(create_rewarding_program());
  // Two destinations that differ in every part: path, query and fragment.
  const std::string dest[2] = {"https://shop.example.com/alpha/one?a=1&aa=11#fa",
                               "https://shop.example.com/beta/two/three?b=2#fb"};
  const std::string prefix[2] = {"https://shop.example.com/alpha/one?a=1&aa=11&ref=ana&earnd_cid=",
                                 "https://shop.example.com/beta/two/three?b=2&ref=ana&earnd_cid="};
  const std::string suffix[2] = {"#fa", "#fb"};

  auto patch = [&](const std::string& destination) {
    boost::json::object body{{"destination", destination}};
    return admin("PATCH", "/v1/links/ana", boost::json::serialize(body)).status == 200;
  };
  ASSERT_TRUE(patch(dest[1]));  // from here on only the two destinations may show
  std::atomic<bool> done{false};
  std::mutex odd_mutex;
  std::string odd;
  std::atomic<int> seen[2] = {0, 0};
  std::atomic<int> other_location{0}, other_status{0};
  std::vector<std::thread> clickers;
  for (int t = 0; t < kClickThreads; ++t) {
    clickers.emplace_back([&] {
      HttpConnection c(public_endpoint());
      while (!done.load() && c.connected()) {
        HttpResponse r =
            c.request("GET", "/r/ana", {{"User-Agent", std::string(integration::kBrowserUa)}});
        if (r.status != 302) {
          other_status.fetch_add(1);
          break;
        }
        std::string loc = r.header("Location").value_or("");
        int which = -1;
        for (int k = 0; k < 2; ++k) {
          if (loc.starts_with(prefix[k]) && loc.ends_with(suffix[k])) {
            which = k;
          }
        }
        (which < 0 ? other_location : seen[which]).fetch_add(1);
        if (which < 0) {
          std::lock_guard lock(odd_mutex);
          odd = loc;
        }
      }
    });
  }
  int patched = 0;
  for (int i = 0; i < kLinkChanges; ++i) {
    patched += patch(dest[i % 2]);
  }
  done.store(true);
  for (auto& t : clickers) {
    t.join();
  }

  EXPECT_EQ(patched, kLinkChanges);
  EXPECT_EQ(other_status.load(), 0);
  EXPECT_EQ(other_location.load(), 0) << "for example " << odd;
  EXPECT_GT(seen[0].load() + seen[1].load(), 0);
  report_figures("link_changes", "patches=" + std::to_string(patched) +
                                     " redirects=" + std::to_string(seen[0] + seen[1]) +
                                     " first=" + std::to_string(seen[0]) +
                                     " second=" + std::to_string(seen[1]) +
                                     " half_written=" + std::to_string(other_location.load()));
}

}  // namespace
}  // namespace earnd::reliability
