#include "earnbench/admin_client.h"

#include <stdexcept>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>

namespace earnbench {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

constexpr auto kCallTimeout = std::chrono::seconds(10);

// Runs one asynchronous operation to its end on ioc. tcp_stream's timeout (expires_after) only
// applies to asynchronous operations, so the calls below are asynchronous run to completion:
// a server that accepts and never answers fails the call after kCallTimeout.
template <class Start>
void run_one(boost::asio::io_context& ioc, Start start) {
  beast::error_code ec;
  bool done = false;
  start([&](beast::error_code e, auto&&...) {
    ec = e;
    done = true;
  });
  ioc.restart();
  ioc.run();
  if (!done) {
    ec = boost::asio::error::operation_aborted;
  }
  if (ec) {
    throw boost::system::system_error(ec == beast::error::timeout ? beast::error::timeout : ec);
  }
}

}  // namespace

AdminClient::AdminClient(HttpEndpoint endpoint, std::string key)
    : endpoint_(std::move(endpoint)), key_(std::move(key)), stream_(ioc_) {}

HttpReply AdminClient::call(std::string_view method,
                            std::string_view target,
                            std::string_view body) {
  // A kept-alive connection may have been closed by the server while idle: one retry.
  if (connected_) {
    try {
      return attempt(method, target, body);
    } catch (const std::exception&) {
      connected_ = false;
    }
  }
  return attempt(method, target, body);
}

HttpReply AdminClient::attempt(std::string_view method,
                               std::string_view target,
                               std::string_view body) {
  try {
    if (!connected_) {
      beast::error_code ignored;
      stream_.socket().close(ignored);
      buffer_.clear();
      tcp::resolver resolver(ioc_);
      auto addresses = resolver.resolve(endpoint_.host, endpoint_.port);
      stream_.expires_after(kCallTimeout);
      run_one(ioc_, [&](auto handler) { stream_.async_connect(addresses, handler); });
      connected_ = true;
    }

    http::request<http::string_body> req(http::string_to_verb(method), target, 11);
    req.set(http::field::host, endpoint_.host_header);
    req.set(http::field::authorization, "Bearer " + key_);
    req.set(http::field::user_agent, "earnbench");
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = std::string(body);
    }
    req.prepare_payload();

    stream_.expires_after(kCallTimeout);
    run_one(ioc_, [&](auto handler) { http::async_write(stream_, req, handler); });
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    stream_.expires_after(kCallTimeout);
    run_one(ioc_, [&](auto handler) { http::async_read(stream_, buffer_, parser, handler); });
    if (!parser.get().keep_alive()) {
      connected_ = false;
    }
    return {parser.get().result_int(), std::move(parser.get().body())};
  } catch (const boost::system::system_error& e) {
    connected_ = false;
    throw std::runtime_error("admin call " + std::string(method) + " " + std::string(target) +
                             " to " + endpoint_.host_header + " failed: " + e.code().message());
  }
}

}  // namespace earnbench
