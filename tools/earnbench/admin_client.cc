#include "earnbench/admin_client.h"

#include <stdexcept>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>

namespace earnbench {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

constexpr auto kCallTimeout = std::chrono::seconds(10);

}  // namespace

AdminClient::AdminClient(HttpEndpoint endpoint, std::string key)
    : endpoint_(std::move(endpoint)), key_(std::move(key)), stream_(ioc_) {}

HttpReply AdminClient::call(std::string_view method, std::string_view target, std::string_view body) {
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

HttpReply AdminClient::attempt(std::string_view method, std::string_view target, std::string_view body) {
  try {
    if (!connected_) {
      beast::error_code ignored;
      stream_.socket().close(ignored);
      buffer_.clear();
      tcp::resolver resolver(ioc_);
      stream_.expires_after(kCallTimeout);
      stream_.connect(resolver.resolve(endpoint_.host, endpoint_.port));
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
    http::write(stream_, req);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream_, buffer_, parser);
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
