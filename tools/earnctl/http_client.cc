#include "http_client.h"

#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace earnctl {

HttpResult call(std::string_view url_base,
                std::string_view admin_key,
                std::string_view method,
                std::string_view target,
                std::string_view body) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  using tcp = boost::asio::ip::tcp;

  if (!url_base.starts_with("http://")) {
    throw std::runtime_error("the server URL must start with http:// (got \"" +
                             std::string(url_base) + "\")");
  }
  std::string_view hostport = url_base.substr(7);
  hostport = hostport.substr(0, hostport.find('/'));
  auto colon = hostport.rfind(':');
  std::string host(hostport.substr(0, colon));
  std::string port =
      colon == std::string_view::npos ? "80" : std::string(hostport.substr(colon + 1));

  boost::asio::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  try {
    stream.connect(resolver.resolve(host, port));
  } catch (const boost::system::system_error& e) {
    // The exception's own text carries Asio's source location; an operator needs the reason.
    throw std::runtime_error(std::string(url_base) + ": " + e.code().message());
  }

  http::request<http::string_body> req(http::string_to_verb(method), std::string(target), 11);
  req.set(http::field::host, host);
  req.set(http::field::authorization, "Bearer " + std::string(admin_key));
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::string(body);
  }
  req.prepare_payload();
  http::write(stream, req);

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::uint64_t{4} << 30);
  http::read(stream, buffer, parser);
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  return {parser.get().result_int(), parser.get().body()};
}

}  // namespace earnctl
