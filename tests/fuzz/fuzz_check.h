#pragma once

// Support for earnd's libFuzzer targets: a check that aborts with a message (so libFuzzer and
// the corpus replay both record the input as a crash), and a scratch directory for targets that
// need a store.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#define EARND_FUZZ_CHECK(cond)                                                            \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (false)

namespace earnd::fuzz {

// A directory made once per process and removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::string templ = (std::filesystem::temp_directory_path() / "earnd-fuzz-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return std::filesystem::path(templ);
  }();
  return dir;
}

}  // namespace earnd::fuzz
