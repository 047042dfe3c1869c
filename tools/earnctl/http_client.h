#pragma once

// A blocking HTTP/1.1 client for earnctl's calls to a running earnd's admin listener.

#include <string>
#include <string_view>

namespace earnctl {

struct HttpResult {
  unsigned status = 0;
  std::string body;
};

// Sends one request to url_base + target with the admin key as a Bearer token. Throws
// std::runtime_error when the server cannot be reached or the URL is not http://HOST:PORT.
HttpResult call(std::string_view url_base,
                std::string_view admin_key,
                std::string_view method,
                std::string_view target,
                std::string_view body);

}  // namespace earnctl
