#pragma once

// Test support for the integration suite: a temporary directory, a real earnd child process
// started on ephemeral loopback ports, and a runner for short-lived commands such as earnctl.
// Everything here blocks with bounded waits, so a stuck server fails a test instead of hanging.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace earnd::integration {

// A HOST:PORT pair as earnd prints it in its `listening` line.
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;

  std::string to_string() const { return host + ":" + std::to_string(port); }
};

// Parses "127.0.0.1:8080" or "[::1]:8080"; returns an endpoint with port 0 when malformed.
Endpoint parse_endpoint(std::string_view text);

// A fresh directory under the system temporary directory, removed with its contents when the
// object goes away. Throws std::runtime_error when it cannot be made. Not copyable.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// How to start earnd. Paths must stay valid while the process runs.
struct EarndOptions {
  std::filesystem::path binary;         // the earnd executable
  std::filesystem::path data_dir;       // passed as --data-dir
  std::filesystem::path log_file;       // receives the child's stdout and stderr (appended)
  std::string admin_key;                // exported as EARND_ADMIN_KEY
  std::filesystem::path config_file;    // passed as --config when not empty
  std::vector<std::string> extra_args;  // appended last, e.g. {"--durability", "async"}
  std::chrono::milliseconds start_timeout{15'000};
};

// One earnd child process. The constructor does not start it; start() does. The destructor
// kills (SIGKILL) and reaps a child that is still running, so a failing test never leaves a
// server behind. The child also receives SIGKILL should the test process die first.
// Not thread-safe: start, stop and wait from one thread (the one that started it, since the
// parent-death signal is tied to that thread).
class EarndProcess {
 public:
  explicit EarndProcess(EarndOptions options);
  ~EarndProcess();
  EarndProcess(const EarndProcess&) = delete;
  EarndProcess& operator=(const EarndProcess&) = delete;

  // Spawns earnd on 127.0.0.1:0 for both listeners, reads the bound addresses from its
  // `event=listening` log line and waits until both answer GET /healthz with 200. Returns an
  // empty string on success, else what went wrong (with the log's tail); the child is then
  // killed.
  [[nodiscard]] std::string start();

  // Sends SIGTERM and waits for the exit. Returns the exit code, 128 + n when signal n ended
  // it, or -1 when it did not exit within timeout (it is then killed with SIGKILL).
  int stop(std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // Sends a signal without waiting (for stopping the server while clients are busy).
  void signal(int signal_number);

  // Waits for the child to exit; same results as stop().
  int wait(std::chrono::milliseconds timeout);

  // SIGKILL and reap; a no-op when nothing runs.
  void kill();

  bool running() const { return pid_ > 0; }

  const Endpoint& public_endpoint() const { return public_; }

  const Endpoint& admin_endpoint() const { return admin_; }

  // Everything the child has logged so far.
  std::string log_text() const;

 private:
  std::string spawn();
  std::string wait_listening();

  EarndOptions options_;
  pid_t pid_ = -1;
  std::size_t log_offset_ = 0;  // where this start's lines begin in the shared log file
  Endpoint public_;
  Endpoint admin_;
};

struct CommandResult {
  int exit_code = -1;  // as EarndProcess::wait reports it
  std::string out;     // standard output
  std::string err;     // standard error, or why the command could not run
};

// Runs argv[0] (a path) with argv, capturing its output through files in scratch_dir. Kills it
// when it runs longer than timeout. Blocks.
CommandResult run_command(const std::vector<std::string>& argv,
                          const std::filesystem::path& scratch_dir,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace earnd::integration
