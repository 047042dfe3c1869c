#pragma once

// A small blocking HTTP/1.1 client for earnbench's calls to earnd's admin listener: the set-up
// of the bench program and its links, and the /metrics reads around a run. Not for the load.

#include <chrono>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "earnbench/target.h"

namespace earnbench {

struct HttpReply {
  unsigned status = 0;
  std::string body;
};

class AdminClient {
 public:
  // Does not connect yet. The key is sent as `Authorization: Bearer <key>` on every call.
  AdminClient(HttpEndpoint endpoint, std::string key);

  // Sends one request on a kept-alive connection, reconnecting once if the server closed it.
  // Blocks up to 10 s. Throws std::runtime_error when the server cannot be reached or answers
  // with something that is not HTTP.
  HttpReply call(std::string_view method, std::string_view target, std::string_view body = {});

 private:
  HttpReply attempt(std::string_view method, std::string_view target, std::string_view body);

  HttpEndpoint endpoint_;
  std::string key_;
  boost::asio::io_context ioc_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  bool connected_ = false;
};

}  // namespace earnbench
