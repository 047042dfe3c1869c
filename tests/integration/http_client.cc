#include "http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace earnd::integration {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// Parses the status line and header fields of head (without the blank line). False when the
// text is not an HTTP response head.
bool parse_head(std::string_view head, HttpResponse& r) {
  std::size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.")) {
    return false;
  }
  r.version = std::string(status_line.substr(0, 8));
  auto [p, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, r.status);
  if (ec != std::errc()) {
    return false;
  }
  std::string_view rest = eol == std::string_view::npos ? "" : head.substr(eol + 2);
  while (!rest.empty()) {
    std::size_t end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? "" : rest.substr(end + 2);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return false;
    }
    r.headers.emplace_back(std::string(line.substr(0, colon)),
                           std::string(trim(line.substr(colon + 1))));
  }
  return true;
}

}  // namespace

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) {
      return v;
    }
  }
  return std::nullopt;
}

std::size_t HttpResponse::header_count(std::string_view name) const {
  return std::count_if(headers.begin(), headers.end(),
                       [&](const auto& h) { return iequals(h.first, name); });
}

std::string make_request(std::string_view method,
                         std::string_view target,
                         const Headers& headers,
                         std::string_view body,
                         std::string_view version) {
  std::string out;
  out.append(method).append(" ").append(target).append(" ").append(version).append("\r\n");
  out += "Host: earnd.test\r\n";
  for (const auto& [name, value] : headers) {
    out.append(name).append(": ").append(value).append("\r\n");
  }
  if (!body.empty()) {
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  out += "\r\n";
  out.append(body);
  return out;
}

HttpConnection::HttpConnection(const Endpoint& endpoint, std::chrono::milliseconds io_timeout)
    : io_timeout_(io_timeout) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(endpoint.port);
  if (::inet_pton(AF_INET, endpoint.host.c_str(), &addr.sin_addr) != 1) {
    error_ = "not an IPv4 address: " + endpoint.host;
    return;
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error_ = errno_text("socket");
    return;
  }

  // Bounded blocking I/O: the kernel ends any single send or recv after io_timeout.
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(io_timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((io_timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    error_ = errno_text("connect");
    ::close(fd);
    return;
  }
  fd_ = fd;
}

HttpConnection::~HttpConnection() {
  close();
}

void HttpConnection::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

bool HttpConnection::send(std::string_view bytes) {
  if (fd_ < 0) {
    error_ = "not connected";
    return false;
  }
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      error_ = errno_text("send");
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool HttpConnection::fill() {
  if (fd_ < 0) {
    error_ = "not connected";
    return false;
  }
  char chunk[16384];
  while (true) {
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) {
      error_ = "connection closed by the server";
      return false;
    }
    if (errno != EINTR) {
      error_ = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : errno_text("recv");
      return false;
    }
  }
}

HttpResponse HttpConnection::read_response(bool head) {
  HttpResponse r;
  std::size_t end = 0;
  while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) {
      r.error = error_ + " before a whole response head";
      return r;
    }
  }
  if (!parse_head(std::string_view(buffer_).substr(0, end), r)) {
    r.status = 0;
    r.error = "malformed response head: " + buffer_.substr(0, end);
    return r;
  }
  buffer_.erase(0, end + 4);

  // Every earnd response carries Content-Length; a HEAD answer has no body regardless.
  std::size_t length = 0;
  if (auto cl = r.header("Content-Length"); cl && !head) {
    std::from_chars(cl->data(), cl->data() + cl->size(), length);
  }
  while (buffer_.size() < length) {
    if (!fill()) {
      r.error = error_ + " inside a response body";
      r.status = 0;
      return r;
    }
  }
  r.body = buffer_.substr(0, length);
  buffer_.erase(0, length);
  return r;
}

HttpResponse HttpConnection::request(std::string_view method,
                                     std::string_view target,
                                     const Headers& headers,
                                     std::string_view body) {
  if (!send(make_request(method, target, headers, body))) {
    HttpResponse r;
    r.error = error_;
    return r;
  }
  return read_response(method == "HEAD");
}

bool HttpConnection::closed_by_peer(std::chrono::milliseconds timeout) {
  if (fd_ < 0 || !buffer_.empty()) {
    return fd_ < 0;
  }
  pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
  int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (ready <= 0) {
    return false;
  }
  char byte = 0;
  ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

HttpResponse fetch(const Endpoint& endpoint,
                   std::string_view method,
                   std::string_view target,
                   const Headers& headers,
                   std::string_view body) {
  HttpConnection c(endpoint);
  if (!c.connected()) {
    HttpResponse r;
    r.error = c.error();
    return r;
  }
  return c.request(method, target, headers, body);
}

}  // namespace earnd::integration
