#include "earnd_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "http_client.h"

extern char** environ;

namespace earnd::integration {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string tail(const std::string& text, std::size_t max_bytes = 4000) {
  if (text.size() <= max_bytes) {
    return text;
  }
  std::string out = "...";
  out.append(text, text.size() - max_bytes);
  return out;
}

// The environment of a child: ours without any EARND_* variable (a developer's shell must not
// change what the tests see), plus the given assignments.
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "EARND_", 6) != 0) {
      env.emplace_back(*e);
    }
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) {
    out.push_back(s.data());
  }
  out.push_back(nullptr);
  return out;
}

// Forks and execs argv with env, stdout and stderr going to the given files (appended). Only
// async-signal-safe calls run between fork and exec. Returns the child's pid, or -1.
pid_t spawn_child(std::vector<std::string> argv,
                  std::vector<std::string> env,
                  const std::filesystem::path& out_file,
                  const std::filesystem::path& err_file,
                  std::string& error) {
  std::vector<char*> argv_p = pointers(argv);
  std::vector<char*> env_p = pointers(env);
  std::string out_path = out_file.string();
  std::string err_path = err_file.string();
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    error = std::string("fork: ") + std::strerror(errno);
    return -1;
  }
  if (pid == 0) {
    // A child outliving a crashed test process would hold ports and temp dirs; have the kernel
    // kill it when the parent goes, and catch the case where that already happened.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(127);
    }
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int err =
        out_path == err_path ? out : ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int null_in = ::open("/dev/null", O_RDONLY);
    if (out < 0 || err < 0 || null_in < 0) {
      ::_exit(126);
    }
    ::dup2(null_in, STDIN_FILENO);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(err, STDERR_FILENO);
    ::execve(argv_p[0], argv_p.data(), env_p.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for pid until timeout; returns the exit code (128 + signal when killed) or -1 when it is
// still running. Polls, since waitpid has no timeout of its own.
int wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (r < 0 && errno != EINTR) {
      return -2;  // not our child any more
    }
    if (Clock::now() >= deadline) {
      return -1;
    }
    std::this_thread::sleep_for(5ms);
  }
}

// Finds `key=HOST:PORT` in line.
Endpoint field_endpoint(std::string_view line, std::string_view key) {
  std::string needle = " ";
  needle.append(key).append("=");
  std::size_t at = line.find(needle);
  if (at == std::string_view::npos) {
    return {};
  }
  std::string_view value = line.substr(at + needle.size());
  return parse_endpoint(value.substr(0, value.find_first_of(" \r\n")));
}

}  // namespace

Endpoint parse_endpoint(std::string_view text) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return {};
  }
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::uint16_t port = 0;
  std::string_view digits = text.substr(colon + 1);
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (ec != std::errc() || p != digits.data() + digits.size()) {
    return {};
  }
  return {std::string(host), port};
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "earnd-integ-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

EarndProcess::EarndProcess(EarndOptions options) : options_(std::move(options)) {}

EarndProcess::~EarndProcess() {
  kill();
}

std::string EarndProcess::start() {
  if (running()) {
    return "earnd is already running";
  }
  log_offset_ = log_text().size();
  if (std::string error = spawn(); !error.empty()) {
    return error;
  }
  if (std::string error = wait_listening(); !error.empty()) {
    kill();
    return error + "\n--- earnd log ---\n" + tail(log_text());
  }
  return {};
}

std::string EarndProcess::spawn() {
  std::vector<std::string> argv = {options_.binary.string(),
                                   "--data-dir",
                                   options_.data_dir.string(),
                                   "--public-listen",
                                   "127.0.0.1:0",
                                   "--admin-listen",
                                   "127.0.0.1:0"};
  if (!options_.config_file.empty()) {
    argv.insert(argv.begin() + 1, {"--config", options_.config_file.string()});
  }
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::string error;
  pid_ = spawn_child(std::move(argv), child_environment({"EARND_ADMIN_KEY=" + options_.admin_key}),
                     options_.log_file, options_.log_file, error);
  return error;
}

// The log file is shared by every start on one data directory, so only `listening` lines that
// appear after this start's own log position count; the newest such line wins.
std::string EarndProcess::wait_listening() {
  auto deadline = Clock::now() + options_.start_timeout;
  public_ = {};
  admin_ = {};
  while (public_.port == 0) {
    std::string log = log_text();
    for (std::size_t at = log.find("event=listening", log_offset_); at != std::string::npos;
         at = log.find("event=listening", at + 1)) {
      std::size_t line_end = log.find('\n', at);
      if (line_end == std::string::npos) {
        break;  // the line is still being written
      }
      std::string_view line(log.data() + at, line_end - at);
      public_ = field_endpoint(line, "public");
      admin_ = field_endpoint(line, "admin");
    }
    if (public_.port != 0 && admin_.port != 0) {
      break;
    }
    if (int code = wait_for_exit(pid_, 0ms); code >= 0) {
      pid_ = -1;
      return "earnd exited with " + std::to_string(code) + " before listening";
    }
    if (Clock::now() >= deadline) {
      return "earnd printed no listening line in time";
    }
    std::this_thread::sleep_for(10ms);
  }

  // The listeners run once the line is out; /healthz proves they answer.
  for (const Endpoint* ep : {&public_, &admin_}) {
    HttpResponse r = fetch(*ep, "GET", "/healthz");
    if (r.status != 200) {
      return "GET /healthz on " + ep->to_string() + " answered " + std::to_string(r.status) + " " +
             r.error;
    }
  }
  return {};
}

int EarndProcess::stop(std::chrono::milliseconds timeout) {
  if (!running()) {
    return -1;
  }
  signal(SIGTERM);
  return wait(timeout);
}

void EarndProcess::signal(int signal_number) {
  if (running()) {
    ::kill(pid_, signal_number);
  }
}

int EarndProcess::wait(std::chrono::milliseconds timeout) {
  if (!running()) {
    return -1;
  }
  int code = wait_for_exit(pid_, timeout);
  if (code == -1) {
    kill();
    return -1;
  }
  pid_ = -1;
  return code;
}

void EarndProcess::kill() {
  if (!running()) {
    return;
  }
  ::kill(pid_, SIGKILL);
  (void)wait_for_exit(pid_, 10s);
  pid_ = -1;
}

std::string EarndProcess::log_text() const {
  return read_file(options_.log_file);
}

CommandResult run_command(const std::vector<std::string>& argv,
                          const std::filesystem::path& scratch_dir,
                          std::chrono::milliseconds timeout) {
  static int counter = 0;
  std::string stem = "command-" + std::to_string(++counter);
  std::filesystem::path out = scratch_dir / (stem + ".out");
  std::filesystem::path err = scratch_dir / (stem + ".err");
  CommandResult result;
  pid_t pid = spawn_child(argv, child_environment({}), out, err, result.err);
  if (pid < 0) {
    return result;
  }
  result.exit_code = wait_for_exit(pid, timeout);
  if (result.exit_code == -1) {
    ::kill(pid, SIGKILL);
    (void)wait_for_exit(pid, 10s);
  }
  result.out = read_file(out);
  result.err += read_file(err);
  return result;
}

}  // namespace earnd::integration
