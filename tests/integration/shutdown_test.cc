// Stopping earnd: SIGTERM and SIGINT end it with exit code 0 after every click it answered
// with a click id is stored, also while clients are busy.

#include <signal.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "server_fixture.h"

namespace earnd::integration {
namespace {

using namespace std::chrono_literals;

// Client threads that click in a loop on kept-alive connections, reconnecting when the server
// closes one, until the server stops accepting, a request budget is spent or a deadline passes.
class ClickLoad {
 public:
  static constexpr int kThreads = 4;
  static constexpr int kMaxRequests = 20'000;
  static constexpr auto kMaxDuration = 5s;

  explicit ClickLoad(Endpoint endpoint) : endpoint_(std::move(endpoint)) {
    deadline_ = std::chrono::steady_clock::now() + kMaxDuration;
    for (int i = 0; i < kThreads; ++i) {
      threads_.emplace_back([this, i] { run(i); });
    }
  }

  ~ClickLoad() { join(); }

  void join() {
    for (auto& t : threads_) {
      if (t.joinable()) {
        t.join();
      }
    }
  }

  // Waits until at least n redirects came back or the load ended; bounded by the deadline.
  void wait_for_redirects(int n) {
    while (redirects_.load() < n && running_.load() > 0 &&
           std::chrono::steady_clock::now() < deadline_) {
      std::this_thread::sleep_for(5ms);
    }
  }

  int redirects() const { return redirects_.load(); }

  int other_statuses() const { return other_statuses_.load(); }

  // The click ids that came back in a 302; call after join().
  const std::set<std::string>& ids() const { return ids_; }

 private:
  bool budget_left() {
    return sent_.fetch_add(1) < kMaxRequests && std::chrono::steady_clock::now() < deadline_;
  }

  void run(int thread) {
    std::string request =
        make_request("GET", "/r/ana",
                     {{"User-Agent", std::string(kBrowserUa) + " load/" + std::to_string(thread)}});
    std::vector<std::string> ids;
    bool accepting = true;
    while (accepting && budget_left()) {
      HttpConnection c(endpoint_, 3s);
      accepting = c.connected();
      while (c.connected() && budget_left() && c.send(request)) {
        HttpResponse r = c.read_response();
        if (r.status == 0) {
          break;  // closed while draining: no answer, so nothing was acknowledged
        }
        if (r.status != 302) {
          other_statuses_.fetch_add(1);
          break;
        }
        redirects_.fetch_add(1);
        if (std::string id = click_id_of(r); !id.empty()) {
          ids.push_back(std::move(id));
        }
        if (r.header("Connection").value_or("") == "close") {
          break;
        }
      }
    }
    std::lock_guard lock(mutex_);
    ids_.insert(ids.begin(), ids.end());
    running_.fetch_sub(1);
  }

  Endpoint endpoint_;
  std::chrono::steady_clock::time_point deadline_;
  std::atomic<int> sent_{0};
  std::atomic<int> redirects_{0};
  std::atomic<int> other_statuses_{0};
  std::atomic<int> running_{kThreads};  // threads that have not finished yet
  std::mutex mutex_;
  std::set<std::string> ids_;
  std::vector<std::thread> threads_;
};

class ShutdownTest : public EarndTest {
 protected:
  void start_with_program(std::vector<std::string> extra_args = {}) {
    ASSERT_NO_FATAL_FAILURE(start_server(std::move(extra_args)));
    create_program();
    ASSERT_FALSE(enrol("u_17", "ana").empty());
  }

  // Every id must be among the exported clicks.
  void expect_all_exported(const std::set<std::string>& ids) {
    std::set<std::string> exported;
    for (const ExportedClick& row : export_clicks()) {
      exported.insert(row.id);
    }
    int missing = 0;
    for (const std::string& id : ids) {
      if (exported.count(id) == 0 && ++missing <= 5) {
        ADD_FAILURE() << "click " << id << " was answered with a 302 but not stored";
      }
    }
    EXPECT_EQ(missing, 0) << "of " << ids.size() << " acknowledged clicks";
    EXPECT_GE(exported.size(), ids.size());
  }
};

TEST_F(ShutdownTest, StoresEveryAcknowledgedClickWhenStoppedUnderLoad) {
  ASSERT_NO_FATAL_FAILURE(start_with_program());
  ClickLoad load(public_endpoint());
  load.wait_for_redirects(400);
  ASSERT_GT(load.redirects(), 0) << "no redirect before the stop";

  server().signal(SIGTERM);
  int exit_code = server().wait(20s);
  load.join();

  EXPECT_EQ(exit_code, 0) << server().log_text();
  EXPECT_EQ(load.other_statuses(), 0);
  EXPECT_NE(server().log_text().find("event=stopped"), std::string::npos);
  ASSERT_GT(load.ids().size(), 0u);
  expect_all_exported(load.ids());
}

TEST_F(ShutdownTest, StoresEveryAcknowledgedClickWhenStoppedUnderLoadInAsyncDurability) {
  ASSERT_NO_FATAL_FAILURE(start_with_program({"--durability", "async"}));
  ClickLoad load(public_endpoint());
  load.wait_for_redirects(400);
  ASSERT_GT(load.redirects(), 0) << "no redirect before the stop";

  server().signal(SIGTERM);
  int exit_code = server().wait(20s);
  load.join();

  EXPECT_EQ(exit_code, 0) << server().log_text();
  ASSERT_GT(load.ids().size(), 0u);
  expect_all_exported(load.ids());
}

TEST_F(ShutdownTest, AnswersClicksInFlightWithoutWaitingOutGrace) {
  // A grace far longer than the wait below. A server that answers the clicks it is committing
  // and then closes the connections exits long before it; one whose I/O threads stopped while
  // sessions still waited for their commit sits out the whole grace and is killed here.
  use_config("[server]\nshutdown_grace_ms = 120000\n");
  ASSERT_NO_FATAL_FAILURE(start_with_program());
  ClickLoad load(public_endpoint());
  load.wait_for_redirects(400);
  ASSERT_GT(load.redirects(), 0) << "no redirect before the stop";

  server().signal(SIGTERM);
  int exit_code = server().wait(10s);
  load.join();

  EXPECT_EQ(exit_code, 0) << "still running 10 s after SIGTERM (-1 means killed)\n"
                          << server().log_text();
  expect_all_exported(load.ids());
}

TEST_F(ShutdownTest, StopsCleanlyOnSigint) {
  ASSERT_NO_FATAL_FAILURE(start_with_program());
  std::string id = click_id_of(visit("/r/ana"));
  ASSERT_TRUE(looks_like_click_id(id));

  server().signal(SIGINT);

  EXPECT_EQ(server().wait(20s), 0) << server().log_text();
  EXPECT_NE(server().log_text().find("event=stopping signal=SIGINT"), std::string::npos);
  expect_all_exported({id});
}

TEST_F(ShutdownTest, ClosesIdleKeptAliveConnectionsOnStop) {
  ASSERT_NO_FATAL_FAILURE(start_with_program());
  HttpConnection idle(public_endpoint());
  HttpResponse r = idle.request("GET", "/r/ana", {{"User-Agent", std::string(kBrowserUa)}});
  ASSERT_EQ(r.status, 302) << r.error;

  ASSERT_EQ(stop_server(), 0);

  EXPECT_TRUE(idle.closed_by_peer());
  expect_all_exported({click_id_of(r)});
}

TEST_F(ShutdownTest, StopsWhileRequestIsHalfSent) {
  // A short grace so the half-sent request is abandoned quickly.
  use_config("[server]\nshutdown_grace_ms = 200\n");
  ASSERT_NO_FATAL_FAILURE(start_with_program());
  HttpConnection slow(public_endpoint());
  ASSERT_TRUE(slow.send("GET /r/ana HTTP/1.1\r\nHost: earnd.test\r\nUser-"));
  HttpConnection slow_admin(admin_endpoint());
  ASSERT_TRUE(slow_admin.send("GET /metrics HTTP/1.1\r\n"));
  // A round trip on each listener; the partial requests are then most likely read by the
  // server before the stop, though the test holds either way.
  ASSERT_EQ(visit("/healthz").status, 200);
  ASSERT_EQ(admin("GET", "/v1/programs/acme").status, 200);

  EXPECT_EQ(stop_server(), 0);
  EXPECT_TRUE(slow.closed_by_peer());
}

}  // namespace
}  // namespace earnd::integration
