#include "receiver.h"

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace earnd::webhooks::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

std::string header(const http::request<http::string_body>& req, std::string_view name) {
  auto it = req.find(name);
  return it == req.end() ? std::string() : std::string(it->value());
}

}  // namespace

Receiver::Receiver(std::uint16_t port, StatusFn status)
    : acceptor_(ioc_), status_(std::move(status)) {
  tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
  accept();
  thread_ = std::thread([this] { ioc_.run(); });
}

Receiver::~Receiver() {
  ioc_.stop();
  thread_.join();
}

std::string Receiver::url(std::string_view scheme) const {
  return std::string(scheme) + "://127.0.0.1:" + std::to_string(port_) + "/hook";
}

std::vector<ReceivedRequest> Receiver::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::size_t Receiver::count() const {
  std::lock_guard lock(mutex_);
  return requests_.size();
}

bool Receiver::wait_for(std::size_t n, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (count() < n) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::uint16_t Receiver::free_port() {
  asio::io_context ioc;
  tcp::acceptor probe(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return probe.local_endpoint().port();
}

void Receiver::hold() {
  std::lock_guard lock(mutex_);
  holding_ = true;
}

void Receiver::release() {
  {
    std::lock_guard lock(mutex_);
    holding_ = false;
  }
  asio::post(ioc_, [this] {
    for (asio::steady_timer* gate : gates_) {
      gate->cancel();
    }
  });
}

std::size_t Receiver::held() const {
  std::lock_guard lock(mutex_);
  return held_;
}

// Runs on the receiver's thread, so a release() posted after holding_ was cleared finds this
// gate registered.
asio::awaitable<void> Receiver::wait_release() {
  asio::steady_timer gate(ioc_, asio::steady_timer::time_point::max());
  gates_.push_back(&gate);
  co_await gate.async_wait(kAwait);
  gates_.erase(std::find(gates_.begin(), gates_.end(), &gate));
  std::lock_guard lock(mutex_);
  --held_;
}

void Receiver::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec) {
      return;
    }
    asio::co_spawn(ioc_, session(std::move(socket)), asio::detached);
    accept();
  });
}

asio::awaitable<void> Receiver::session(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    stream.expires_after(std::chrono::seconds(5));
    http::request<http::string_body> req;
    auto [ec, n] = co_await http::async_read(stream, buffer, req, kAwait);
    if (ec) {
      co_return;  // closed, or not HTTP (a TLS hello, for instance)
    }
    unsigned status = 200;
    bool hold = false;
    {
      std::lock_guard lock(mutex_);
      hold = holding_;
      held_ += hold ? 1 : 0;
      if (status_) {
        status = status_(requests_.size());
      }
      requests_.push_back({std::string(req.target()), header(req, "webhook-id"),
                           header(req, "webhook-timestamp"), header(req, "webhook-signature"),
                           header(req, "content-type"), header(req, "user-agent"), req.body()});
    }
    if (hold) {
      stream.expires_never();
      co_await wait_release();
      stream.expires_after(std::chrono::seconds(5));
    }
    http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
    res.body() = "ok";
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    auto [wec, w] = co_await http::async_write(stream, res, kAwait);
    if (wec || !req.keep_alive()) {
      co_return;
    }
  }
}

}  // namespace earnd::webhooks::testing
