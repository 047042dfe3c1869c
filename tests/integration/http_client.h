#pragma once

// A small blocking HTTP/1.x client for the integration tests, on plain POSIX sockets. It sends
// whatever bytes it is given (so tests can write malformed or pipelined requests) and reads
// responses framed by Content-Length. Every socket wait is bounded.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "earnd_process.h"

namespace earnd::integration {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;       // 0 when no response could be read; see error
  std::string version;  // "HTTP/1.1"
  Headers headers;      // in the order received, names as sent
  std::string body;
  std::string error;  // why reading failed, empty otherwise

  // The first value of a header (name compared case-insensitively), or nullopt.
  std::optional<std::string> header(std::string_view name) const;
  std::size_t header_count(std::string_view name) const;
};

// Formats a request. A Host header is added first; body, when not empty, gets a Content-Length.
std::string make_request(std::string_view method,
                         std::string_view target,
                         const Headers& headers = {},
                         std::string_view body = {},
                         std::string_view version = "HTTP/1.1");

// One client connection. Not thread-safe; use one per thread.
class HttpConnection {
 public:
  // Connects at once; connected() and error() tell how that went.
  explicit HttpConnection(const Endpoint& endpoint,
                          std::chrono::milliseconds io_timeout = std::chrono::seconds(10));
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  bool connected() const { return fd_ >= 0; }

  const std::string& error() const { return error_; }

  // Writes all of bytes. False (with error()) when the peer has gone or the write timed out.
  bool send(std::string_view bytes);

  // Reads the next response. head: it answers a HEAD request, so it carries no body whatever
  // its Content-Length says.
  HttpResponse read_response(bool head = false);

  // send(make_request(...)) then read_response().
  HttpResponse request(std::string_view method,
                       std::string_view target,
                       const Headers& headers = {},
                       std::string_view body = {});

  // True when the peer closes the connection (EOF or reset) without sending more bytes within
  // timeout; false when bytes arrive or the connection stays open that long.
  bool closed_by_peer(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Closes the client side.
  void close();

 private:
  // Reads more bytes into buffer_; false on EOF, error or timeout (error_ says which).
  bool fill();

  int fd_ = -1;
  std::chrono::milliseconds io_timeout_;
  std::string buffer_;  // bytes received and not yet consumed
  std::string error_;
};

// One request on a fresh connection, closed afterwards.
HttpResponse fetch(const Endpoint& endpoint,
                   std::string_view method,
                   std::string_view target,
                   const Headers& headers = {},
                   std::string_view body = {});

}  // namespace earnd::integration
