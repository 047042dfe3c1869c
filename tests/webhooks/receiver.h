#pragma once

// A webhook receiver for the tests: an HTTP/1.1 server on 127.0.0.1 with its own thread that
// records every request and answers with a status chosen per request.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace earnd::webhooks::testing {

struct ReceivedRequest {
  std::string target;
  std::string id;
  std::string timestamp;
  std::string signature;
  std::string content_type;
  std::string user_agent;
  std::string body;
};

class Receiver {
 public:
  // Answers the n-th request (from 0) with status(n); 200 for every request by default.
  using StatusFn = std::function<unsigned(std::size_t)>;

  // Listens on port (0: any free port). Throws when the port cannot be bound.
  explicit Receiver(std::uint16_t port = 0, StatusFn status = {});
  ~Receiver();

  std::uint16_t port() const { return port_; }

  std::string url(std::string_view scheme = "http") const;

  std::vector<ReceivedRequest> requests() const;
  std::size_t count() const;
  // Waits until at least n requests arrived; false after the timeout.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout) const;

  // A port that was free a moment ago, for a receiver that starts later.
  static std::uint16_t free_port();

  // While held, each request is recorded as it arrives but its response waits, with the
  // connection open, until release(). held() counts the requests waiting. Thread-safe.
  void hold();
  void release();
  std::size_t held() const;

 private:
  void accept();
  boost::asio::awaitable<void> session(boost::asio::ip::tcp::socket socket);
  boost::asio::awaitable<void> wait_release();

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  StatusFn status_;
  mutable std::mutex mutex_;
  std::vector<ReceivedRequest> requests_;
  bool holding_ = false;
  std::size_t held_ = 0;
  // The timers of held requests; touched only on the receiver's thread.
  std::vector<boost::asio::steady_timer*> gates_;
  std::thread thread_;
};

}  // namespace earnd::webhooks::testing
