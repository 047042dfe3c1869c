#include "web_assets.h"

#include <algorithm>
#include <cstddef>

#include "web_auth.h"

namespace earnd::http::web {

// Written by CMake (web_assets_table.cc in the build tree): one entry per file, sorted by path.
struct EmbeddedFile {
  const char* path;
  const char* begin;
  const char* end;
};

extern const EmbeddedFile kEmbeddedFiles[];
extern const std::size_t kEmbeddedFileCount;

std::optional<std::string_view> asset(std::string_view path) noexcept {
  const EmbeddedFile* first = kEmbeddedFiles;
  const EmbeddedFile* last = kEmbeddedFiles + kEmbeddedFileCount;
  auto it = std::lower_bound(first, last, path, [](const EmbeddedFile& f, std::string_view p) {
    return std::string_view(f.path) < p;
  });
  if (it == last || std::string_view(it->path) != path) {
    return std::nullopt;
  }
  return std::string_view(it->begin, static_cast<std::size_t>(it->end - it->begin));
}

std::string_view content_type_of(std::string_view path) noexcept {
  if (path.ends_with(".html")) {
    return "text/html; charset=utf-8";
  }
  if (path.ends_with(".js") || path.ends_with(".mjs")) {
    return "text/javascript; charset=utf-8";
  }
  if (path.ends_with(".css")) {
    return "text/css; charset=utf-8";
  }
  if (path.ends_with(".svg")) {
    return "image/svg+xml";
  }
  return "application/octet-stream";
}

std::optional<Reply> asset_reply(std::string_view path) {
  if (path.empty() || path.front() == '/' || path.find("..") != std::string_view::npos ||
      path.find('\\') != std::string_view::npos) {
    return std::nullopt;
  }
  auto body = asset(path);
  if (!body) {
    return std::nullopt;
  }
  Reply r{200, std::string(content_type_of(path)), std::string(*body), {}};
  // Pages are small and change with the binary; revalidating keeps an upgrade visible at once.
  r.headers.emplace_back("Cache-Control", "no-cache");
  add_security_headers(r);
  return r;
}

}  // namespace earnd::http::web
