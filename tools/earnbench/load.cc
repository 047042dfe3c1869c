#include "earnbench/load.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <exception>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/read.hpp>

#include "earnbench/zipf.h"

namespace earnbench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;

constexpr auto kTick = std::chrono::milliseconds(10);  // Timeout and stop checks.
constexpr auto kConnectBackoff = std::chrono::milliseconds(10);
constexpr std::size_t kHeaderLimit = 16 * 1024;
constexpr std::uint64_t kBodyLimit = 1 << 20;
constexpr unsigned kVisitors = 10'000;  // Distinct human browsers, told apart by user agent.

// Public user agents of well-known crawlers and link-preview fetchers.
constexpr std::string_view kBotAgents[] = {
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
};

void append_number(std::string& out, std::uint64_t v) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, end);
}

std::uint64_t micros(Clock::duration d) {
  return static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(d).count()));
}

// Keeps only what a click needs from a response, without allocating: the status, the click id
// from `Set-Cookie: earnd_cid=...`, and (through basic_parser) whether the connection stays
// open. Bodies are counted and dropped.
class ResponseReader final : public http::basic_parser<false> {
 public:
  explicit ResponseReader(std::string& click_id) : click_id_(click_id) {
    click_id_.clear();
    header_limit(kHeaderLimit);
    body_limit(kBodyLimit);
  }

  unsigned status() const noexcept { return status_; }

 private:
  void on_request_impl(
      http::verb, beast::string_view, beast::string_view, int, ErrorCode&) override {}

  void on_response_impl(int code, beast::string_view, int, ErrorCode&) override {
    status_ = static_cast<unsigned>(code);
  }

  void on_field_impl(http::field name,
                     beast::string_view,
                     beast::string_view value,
                     ErrorCode&) override {
    constexpr std::string_view kCookie = "earnd_cid=";
    if (name == http::field::set_cookie && value.starts_with(kCookie)) {
      value.remove_prefix(kCookie.size());
      click_id_.assign(value.substr(0, value.find(';')));
    }
  }

  void on_header_impl(ErrorCode&) override {}

  void on_body_init_impl(const boost::optional<std::uint64_t>&, ErrorCode&) override {}

  std::size_t on_body_impl(beast::string_view body, ErrorCode&) override { return body.size(); }

  void on_chunk_header_impl(std::uint64_t, beast::string_view, ErrorCode&) override {}

  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, ErrorCode&) override {
    return body.size();
  }

  void on_finish_impl(ErrorCode&) override {}

  std::string& click_id_;
  unsigned status_ = 0;
};

// Shared by every thread; written only before the threads start, apart from `issued`.
struct RunState {
  RunState(const LoadOptions& o, tcp::endpoint e)
      : opt(o), endpoint(std::move(e)), zipf(o.codes.size(), o.zipf) {}

  const LoadOptions& opt;
  tcp::endpoint endpoint;
  ZipfSampler zipf;
  Clock::time_point start;
  Clock::time_point deadline;
  Clock::time_point hard_stop;  // deadline + timeout: what is still open then is cut off.
  std::atomic<std::uint64_t> issued{0};
  std::string run_id;  // Keeps conversion event ids unique across runs.

  bool open_loop() const noexcept { return opt.rate > 0; }

  // Claims one click of the --requests budget.
  bool take_budget() noexcept {
    // Relaxed: a plain counter; no other memory is published through it.
    return opt.max_requests == 0 ||
           issued.fetch_add(1, std::memory_order_relaxed) < opt.max_requests;
  }
};

enum class Outcome { kOk, kConnect, kWrite, kRead, kTimeout };

class Worker;

// One simulated client: a kept-alive socket, plus a socket of its own for each click that
// stands for a new visitor connection. Lives on one worker thread; owned by its Worker.
class Connection {
 public:
  Connection(Worker& worker, RunState& run, unsigned index);

  // Opens the kept-alive socket before the clock starts, so that the first clicks do not pay
  // for the handshake; a failure is left for the run to retry and count.
  void preconnect();

  asio::awaitable<void> run();

  // Called by the worker's sweeper every tick: cuts off a request past its timeout, or every
  // pending operation once the run is stopping.
  void check(Clock::time_point now, bool stopping);

  void wake() { timer_.cancel(); }  // a connection waiting for its next slot looks again

 private:
  asio::awaitable<void> click(Clock::time_point intended);
  asio::awaitable<void> convert();
  asio::awaitable<Outcome> exchange(tcp::socket& s, beast::flat_buffer& buf, bool close_after);
  Outcome fail(tcp::socket& s, beast::flat_buffer& buf, Outcome why);
  void count_failure(Outcome o);
  void build_click(std::string_view code, bool bot, bool fresh);
  void build_conversion();

  double draw() { return std::uniform_real_distribution<double>(0, 1)(rng_); }

  Worker& worker_;
  RunState& run_;
  unsigned index_;
  tcp::socket sock_;   // Kept alive across clicks.
  tcp::socket fresh_;  // One click per connection.
  beast::flat_buffer buf_;
  beast::flat_buffer fresh_buf_;
  asio::steady_timer timer_;
  std::mt19937_64 rng_;
  std::string req_;
  std::string click_id_;
  std::string conversion_click_id_;
  unsigned status_ = 0;
  std::uint64_t conversions_ = 0;

  // The request in flight, for the sweeper.
  tcp::socket* busy_socket_ = nullptr;
  Clock::time_point busy_since_;
  bool timed_out_ = false;
};

// One thread: its io_context, its connections and the counters they share without locks.
class Worker {
 public:
  explicit Worker(RunState& run) : run_(run) {}

  void add_connection(unsigned index) {
    connections_.push_back(std::make_unique<Connection>(*this, run_, index));
  }

  void preconnect() {
    for (auto& c : connections_) {
      c->preconnect();
    }
  }

  // Spawns the connections and the sweeper; run() then drives them to the end.
  void spawn();

  void run() { ioc_.run(); }

  asio::io_context& ioc() { return ioc_; }

  LoadStats& stats() { return stats_; }

  bool stopping() const noexcept { return stopping_; }

  bool interrupted() const noexcept { return interrupted_; }

  Clock::time_point finished() const noexcept { return finished_; }

  std::exception_ptr failure() const noexcept { return failure_; }

 private:
  asio::awaitable<void> sweep();
  void connection_done(std::exception_ptr e);

  RunState& run_;
  asio::io_context ioc_{1};
  std::vector<std::unique_ptr<Connection>> connections_;
  LoadStats stats_;
  std::size_t active_ = 0;
  bool stopping_ = false;
  bool interrupted_ = false;
  Clock::time_point interrupt_stop_;
  Clock::time_point finished_;
  std::exception_ptr failure_;
};

Connection::Connection(Worker& worker, RunState& run, unsigned index)
    : worker_(worker),
      run_(run),
      index_(index),
      sock_(worker.ioc()),
      fresh_(worker.ioc()),
      timer_(worker.ioc()),
      rng_(run.opt.seed * 1'000'003 + index) {
  req_.reserve(512);
  click_id_.reserve(64);
  conversion_click_id_.reserve(64);
}

void Connection::preconnect() {
  if (run_.opt.new_conn_share >= 1) {
    return;
  }
  ErrorCode ec;
  sock_.connect(run_.endpoint, ec);
  if (ec) {
    sock_.close(ec);
    return;
  }
  sock_.set_option(tcp::no_delay(true), ec);
  ++worker_.stats().new_connections;
}

asio::awaitable<void> Connection::run() {
  const auto& opt = run_.opt;
  // Open loop: this connection's share of the schedule, offset so that together the
  // connections send at evenly spaced times.
  const double interval_ns = run_.open_loop() ? 1e9 * opt.connections / opt.rate : 0;
  const double offset_ns = run_.open_loop() ? 1e9 * index_ / opt.rate : 0;
  std::uint64_t slot = 0;
  // Past the deadline (or beyond what a time point holds) is the deadline: the schedule ends.
  const double span_ns = static_cast<double>((run_.deadline - run_.start).count());
  auto intended_at = [&](std::uint64_t k) {
    double at = offset_ns + interval_ns * static_cast<double>(k);
    if (!(at < span_ns)) {
      return run_.deadline;
    }
    return run_.start + std::chrono::nanoseconds(static_cast<std::int64_t>(at));
  };

  for (;;) {
    Clock::time_point intended = run_.open_loop() ? intended_at(slot) : Clock::now();
    if (intended >= run_.deadline || worker_.stopping() || worker_.interrupted() ||
        !run_.take_budget()) {
      break;
    }
    ++slot;
    if (run_.open_loop() && Clock::now() < intended) {
      ErrorCode ec;
      timer_.expires_at(intended);
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_await click(intended);
  }

  // Open loop cut off at the hard stop: the clicks still scheduled before the deadline never
  // got an answer in time, which is what a timeout is.
  if (run_.open_loop() && worker_.stopping() && !worker_.interrupted()) {
    while (intended_at(slot) < run_.deadline) {
      ++worker_.stats().timeouts;
      ++slot;
    }
  }
  ErrorCode ec;
  sock_.close(ec);
}

asio::awaitable<void> Connection::click(Clock::time_point intended) {
  const auto& opt = run_.opt;
  const bool fresh = opt.new_conn_share > 0 && draw() < opt.new_conn_share;
  const bool bot = opt.bot_share > 0 && draw() < opt.bot_share;
  const std::string& code = opt.codes[run_.zipf.rank(draw())];
  build_click(code, bot, fresh);
  if (bot) {
    ++worker_.stats().bot_requests;
  }

  Clock::time_point sent = Clock::now();
  Outcome o = co_await exchange(fresh ? fresh_ : sock_, fresh ? fresh_buf_ : buf_, fresh);
  if (o != Outcome::kOk) {
    count_failure(o);
    if (o == Outcome::kConnect && !worker_.stopping()) {
      // A refused connect returns at once; without a pause a closed loop would spin on it.
      ErrorCode ec;
      timer_.expires_after(kConnectBackoff);
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return;
  }

  LoadStats& st = worker_.stats();
  st.latency.record(micros(Clock::now() - (run_.open_loop() ? intended : sent)));
  ++st.responses;
  ++st.by_status[status_ < st.by_status.size() ? status_ : 0];
  if (status_ == 302 && !click_id_.empty() && opt.conversions_per_click > 0 &&
      draw() < opt.conversions_per_click) {
    co_await convert();
  }
}

asio::awaitable<void> Connection::convert() {
  conversion_click_id_ = click_id_;
  build_conversion();
  ++worker_.stats().conversions_sent;
  Outcome o = co_await exchange(sock_, buf_, false);
  if (o == Outcome::kOk && (status_ == 201 || status_ == 200)) {
    ++worker_.stats().conversions_accepted;
  }
}

asio::awaitable<Outcome> Connection::exchange(tcp::socket& s,
                                              beast::flat_buffer& buf,
                                              bool close_after) {
  ErrorCode ec;
  busy_socket_ = &s;
  busy_since_ = Clock::now();
  timed_out_ = false;

  if (!s.is_open()) {
    co_await s.async_connect(run_.endpoint, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      co_return fail(s, buf, Outcome::kConnect);
    }
    s.set_option(tcp::no_delay(true), ec);
    ++worker_.stats().new_connections;
  }

  co_await asio::async_write(s, asio::buffer(req_), asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return fail(s, buf, Outcome::kWrite);
  }

  ResponseReader reader(click_id_);
  co_await http::async_read(s, buf, reader, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    co_return fail(s, buf, Outcome::kRead);
  }

  busy_socket_ = nullptr;
  status_ = reader.status();
  if (close_after || !reader.keep_alive()) {
    s.close(ec);
    buf.clear();
  }
  co_return Outcome::kOk;
}

Outcome Connection::fail(tcp::socket& s, beast::flat_buffer& buf, Outcome why) {
  busy_socket_ = nullptr;
  ErrorCode ec;
  s.close(ec);
  buf.clear();
  return timed_out_ || worker_.stopping() ? Outcome::kTimeout : why;
}

void Connection::count_failure(Outcome o) {
  LoadStats& st = worker_.stats();
  switch (o) {
    case Outcome::kConnect:
      ++st.connect_errors;
      break;
    case Outcome::kWrite:
      ++st.write_errors;
      break;
    case Outcome::kRead:
      ++st.read_errors;
      break;
    case Outcome::kTimeout:
      ++st.timeouts;
      break;
    case Outcome::kOk:
      break;
  }
}

void Connection::check(Clock::time_point now, bool stopping) {
  ErrorCode ec;
  if (busy_socket_ != nullptr && (stopping || now - busy_since_ > run_.opt.timeout)) {
    timed_out_ = true;
    busy_socket_->close(ec);  // The pending operation completes with operation_aborted.
  }
  if (stopping) {
    timer_.cancel();
  }
}

void Connection::build_click(std::string_view code, bool bot, bool fresh) {
  req_.clear();
  req_ += "GET /r/";
  req_ += code;
  req_ += " HTTP/1.1\r\nHost: ";
  req_ += run_.opt.endpoint.host_header;
  req_ += "\r\nUser-Agent: ";
  if (bot) {
    req_ += kBotAgents[static_cast<std::size_t>(draw() * std::size(kBotAgents))];
  } else {
    // The build number stands for one of many visitors.
    req_ += "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.";
    append_number(req_, static_cast<std::uint64_t>(draw() * kVisitors));
    req_ += ".0 Safari/537.36";
  }
  req_ +=
      "\r\nAccept: text/html,application/xhtml+xml\r\nReferer: https://blog.example.com/review\r\n";
  if (fresh) {
    req_ += "Connection: close\r\n";
  }
  req_ += "\r\n";
}

void Connection::build_conversion() {
  std::string body = "{\"event_id\":\"eb-";
  body += run_.run_id;
  body += '-';
  append_number(body, index_);
  body += '-';
  append_number(body, ++conversions_);
  body += "\",\"type\":\"sale\",\"click_id\":\"";
  body += conversion_click_id_;
  body += "\",\"amount_minor\":4990,\"currency\":\"";
  body += run_.opt.currency;
  body += "\"}";

  req_.clear();
  req_ += "POST /v1/conversions HTTP/1.1\r\nHost: ";
  req_ += run_.opt.endpoint.host_header;
  req_ += "\r\nAuthorization: Bearer ";
  req_ += run_.opt.program_key;
  req_ += "\r\nContent-Type: application/json\r\nContent-Length: ";
  append_number(req_, body.size());
  req_ += "\r\n\r\n";
  req_ += body;
}

void Worker::spawn() {
  active_ = connections_.size();
  for (auto& c : connections_) {
    asio::co_spawn(ioc_, c->run(), [this](std::exception_ptr e) { connection_done(e); });
  }
  asio::co_spawn(ioc_, sweep(), [this](std::exception_ptr e) {
    if (e && !failure_) {
      failure_ = e;
    }
  });
}

void Worker::connection_done(std::exception_ptr e) {
  if (e && !failure_) {
    failure_ = e;
  }
  if (--active_ == 0) {
    finished_ = Clock::now();
  }
}

asio::awaitable<void> Worker::sweep() {
  asio::steady_timer tick(ioc_);
  while (active_ > 0) {
    ErrorCode ec;
    tick.expires_after(kTick);
    co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    Clock::time_point now = Clock::now();
    // An interrupt sends no new clicks and gives those in flight the usual timeout to finish
    // (they are answers, not errors); the run's own end cuts them off at the hard stop.
    if (!interrupted_ && run_.opt.interrupt != nullptr &&
        run_.opt.interrupt->load(std::memory_order_relaxed)) {
      interrupted_ = true;
      interrupt_stop_ = now + run_.opt.timeout;
      for (auto& c : connections_) {
        c->wake();
      }
    }
    stopping_ = stopping_ || now >= run_.hard_stop || (interrupted_ && now >= interrupt_stop_);
    for (auto& c : connections_) {
      c->check(now, stopping_);
    }
  }
}

tcp::endpoint resolve(const HttpEndpoint& e) {
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  ErrorCode ec;
  auto results = resolver.resolve(e.host, e.port, ec);
  if (ec || results.empty()) {
    throw std::runtime_error("cannot resolve " + e.host + ":" + e.port + ": " + ec.message());
  }
  return results.begin()->endpoint();
}

}  // namespace

void LoadStats::merge(const LoadStats& o) {
  latency.merge(o.latency);
  responses += o.responses;
  for (std::size_t i = 0; i < by_status.size(); ++i) {
    by_status[i] += o.by_status[i];
  }
  connect_errors += o.connect_errors;
  write_errors += o.write_errors;
  read_errors += o.read_errors;
  timeouts += o.timeouts;
  new_connections += o.new_connections;
  bot_requests += o.bot_requests;
  conversions_sent += o.conversions_sent;
  conversions_accepted += o.conversions_accepted;
}

LoadResult run_load(const LoadOptions& opt) {
  RunState run(opt, resolve(opt.endpoint));
  run.run_id = std::to_string(std::random_device{}()) + std::to_string(opt.seed);

  // Connections go round-robin over the threads; a thread without one would only idle.
  unsigned threads = std::max(1u, std::min(opt.threads, opt.connections));
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.push_back(std::make_unique<Worker>(run));
  }
  for (unsigned c = 0; c < opt.connections; ++c) {
    workers[c % threads]->add_connection(c);
  }
  for (auto& w : workers) {
    w->preconnect();
  }

  run.start = Clock::now();
  run.deadline = run.start + opt.duration;
  run.hard_stop = run.deadline + opt.timeout;
  for (auto& w : workers) {
    w->spawn();
  }
  std::vector<std::thread> pool;
  for (auto& w : workers) {
    pool.emplace_back([&w] { w->run(); });
  }
  for (auto& t : pool) {
    t.join();
  }

  LoadResult result;
  Clock::time_point end = run.start;
  for (auto& w : workers) {
    if (w->failure()) {
      std::rethrow_exception(w->failure());
    }
    result.stats.merge(w->stats());
    end = std::max(end, w->finished());
    result.interrupted = result.interrupted || w->interrupted();
  }
  // An open loop's schedule spans the whole duration even when its last click was sent early
  // (a low rate), so throughput is over the duration, not over the busy part.
  // (Not when it ended early: interrupted, or its --requests budget spent.)
  bool budget_spent = opt.max_requests > 0 && run.issued.load() >= opt.max_requests;
  if (run.open_loop() && !result.interrupted && !budget_spent) {
    end = std::max(end, run.deadline);
  }
  result.elapsed = end - run.start;
  return result;
}

}  // namespace earnbench
