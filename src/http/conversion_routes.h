#pragma once

// The public conversion routes (POST /v1/conversions, GET /postback) up to the point where the
// request is handed to the conversion thread, and the queue that batches them there.

#include <functional>
#include <memory>
#include <thread>
#include <variant>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "earnd/attribution/conversions.h"
#include "handlers.h"
#include "rate_limiter.h"
#include "redirect.h"

namespace earnd::http {

// True for the paths handled here.
bool is_conversion_target(std::string_view target) noexcept;

// Authenticates (program key, postback key or publishable key) and parses the request into a
// ConversionRequest, or returns the error reply to send. Runs on the I/O thread; the key checks
// take the catalog's admin mutex briefly, never the redirect path's.
std::variant<Reply, attribution::ConversionRequest> read_conversion(
    const RedirectEnv& env, const Request& req, const boost::asio::ip::address& peer);

// The conversion routes' rate limits: per client address (checked before the key, so it also
// slows down key guessing) and per program and key kind (publishable or secret).
struct ConversionLimits {
  // Rates per second (0: off); each bucket holds burst_s seconds of its rate.
  ConversionLimits(double client_rate, double program_rate, double burst_s)
      : per_client(client_rate, client_rate * burst_s),
        per_program(program_rate, program_rate * burst_s) {}

  RateLimiter per_client;
  RateLimiter per_program;
};

// read_conversion behind the limits: 429 rate_limited with Retry-After when the client or the
// program has used up its budget. Thread-safe.
std::variant<Reply, attribution::ConversionRequest> read_limited_conversion(
    const RedirectEnv& env,
    const Request& req,
    const boost::asio::ip::address& peer,
    ConversionLimits& limits);

// The conversion thread: requests posted from any I/O thread are processed in batches of what
// arrived together, one synced write per batch. Replies are handed to each request's callback on
// the conversion thread.
class ConversionQueue {
 public:
  using Done = std::function<void(attribution::ConversionReply)>;

  explicit ConversionQueue(attribution::ConversionService& service);
  ~ConversionQueue();

  // Thread-safe.
  void submit(attribution::ConversionRequest request, Done done);

  // Runs task on the conversion thread (serialized with conversions) and waits for its result.
  // Thread-safe; blocks the caller (the admin thread).
  std::pair<unsigned, std::string> run(std::function<std::pair<unsigned, std::string>()> task);

  // Processes what was submitted, then stops the thread. Call once no thread submits any more.
  void stop();

 private:
  struct Item {
    attribution::ConversionRequest request;
    Done done;
  };

  void flush();
  void schedule_approvals();

  attribution::ConversionService& service_;
  boost::asio::io_context ioc_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<Item> pending_;  // touched on the conversion thread only
  bool scheduled_ = false;     // touched on the conversion thread only
  boost::asio::steady_timer approvals_{ioc_};
  std::thread thread_;
};

}  // namespace earnd::http
