#pragma once

// Knobs and figures shared by the reliability suites. The default run is short; the long
// variants set EARND_RELIABILITY_ROUNDS (and may fix EARND_RELIABILITY_SEED to replay a run).
// Each test reports its figures as one "FIGURES test=… key=value …" line on stdout, and appends
// the same line to the file named by EARND_RELIABILITY_FIGURES when it is set (docs/reliability.md
// is written from those lines).

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

namespace earnd::reliability {

// Rounds to run: EARND_RELIABILITY_ROUNDS when set to a positive number, else fallback.
inline int reliability_rounds(int fallback) {
  const char* v = std::getenv("EARND_RELIABILITY_ROUNDS");
  int n = v ? std::atoi(v) : 0;
  return n > 0 ? n : fallback;
}

// A seed from EARND_RELIABILITY_SEED, or a fresh one.
inline std::uint64_t reliability_seed() {
  if (const char* v = std::getenv("EARND_RELIABILITY_SEED"); v != nullptr && *v != '\0') {
    return std::strtoull(v, nullptr, 10);
  }
  return std::random_device{}() ^
         static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
}

// Prints "FIGURES test=<test> <fields>" and appends it to $EARND_RELIABILITY_FIGURES if set.
inline void report_figures(std::string_view test, const std::string& fields) {
  std::string line = "FIGURES test=" + std::string(test) + " " + fields + "\n";
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
  if (const char* path = std::getenv("EARND_RELIABILITY_FIGURES"); path != nullptr && *path) {
    if (std::FILE* f = std::fopen(path, "a")) {
      std::fputs(line.c_str(), f);
      std::fclose(f);
    }
  }
}

// A fresh directory under the system temporary directory, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "earnd-rel-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) {
      throw std::runtime_error("cannot make a temporary directory");
    }
    path_ = templ;
  }

  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace earnd::reliability
