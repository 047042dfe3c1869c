#pragma once

// The files of the web pages (assets/web/: HTML, CSS, ES modules and the vendored chart and QR
// libraries), embedded in the binary at build time, so earnd serves them with no file beside
// it and the pages need no network beyond earnd.

#include <optional>
#include <string_view>

#include "handlers.h"

namespace earnd::http::web {

// The embedded file at a path relative to assets/web ("admin/index.html"), or nullopt. The
// bytes live as long as the process. Thread-safe; does not allocate.
std::optional<std::string_view> asset(std::string_view path) noexcept;

// The Content-Type for a file name, by its extension.
std::string_view content_type_of(std::string_view path) noexcept;

// A 200 with the file and the pages' security headers, or nullopt when there is no such file.
// Paths with "..", a leading "/" or a backslash are never looked up.
std::optional<Reply> asset_reply(std::string_view path);

}  // namespace earnd::http::web
