// earnbench: drives a running earnd with a realistic click mix and reports throughput, latency
// percentiles, errors and the server's own figures per click; `earnbench plan` turns such a
// run into cores, memory and disk for a given load. Wiring only: the logic lives beside it.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <toml++/toml.h>

#include "earnbench/admin_client.h"
#include "earnbench/duration.h"
#include "earnbench/load.h"
#include "earnbench/plan.h"
#include "earnbench/proc_stat.h"
#include "earnbench/prometheus.h"
#include "earnbench/result.h"
#include "earnbench/target.h"

namespace {

namespace json = boost::json;
using namespace earnbench;

constexpr const char* kBenchProgram = "bench";

// Ctrl-C (SIGINT) or SIGTERM during a run: it ends early and still reports what it measured.
std::atomic<bool> g_interrupted{false};

void on_interrupt(int) {
  g_interrupted.store(true, std::memory_order_relaxed);
}

void catch_interrupts() {
  struct sigaction sa {};

  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct Flags {
  std::string url;
  std::string duration = "10s";
  std::int64_t requests = 0;  // signed, so that a negative count is refused, not wrapped
  unsigned connections = 16;
  unsigned threads = 2;
  double rate = 0;
  std::size_t codes = 100;
  double zipf = 1.1;
  double new_conn_share = 0;
  double bot_share = 0.02;
  double conversions_per_click = 0;
  std::string admin_url;
  bool setup = false;
  std::string code_prefix = "b";
  std::string code;
  std::string program_key;
  std::string currency = "USD";
  std::string timeout = "5s";
  int server_pid = 0;
  std::uint64_t seed = 1;
  std::string json_file;
  bool json_set = false;  // --json given (an empty name is refused)
};

struct PlanFlags {
  PlanRequest request;
  std::string from_json;
};

// Startup errors: the usage is wrong or earnd cannot be prepared. main() prints them and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A file read whole (a scenario, a result): it must be a regular file of at most `limit` bytes.
std::string read_small_file(const std::string& path, std::uintmax_t limit, const char* what) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    throw UsageError(std::string(what) + " " + path + ": no such file");
  }
  if (!std::filesystem::is_regular_file(status)) {
    throw UsageError(std::string(what) + " " + path + ": not a regular file");
  }
  auto size = std::filesystem::file_size(path, ec);
  if (ec || size > limit) {
    throw UsageError(fmt::format("{} {}: larger than {} bytes", what, path, limit));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    throw UsageError(std::string(what) + " " + path + ": cannot be read: " + std::strerror(errno));
  }
  return text.str();
}

void add_run_options(CLI::App& app, Flags& f) {
  app.add_option("--url", f.url, "earnd's public listener, http://HOST:PORT (required)");
  app.add_option("--duration", f.duration, "How long to send clicks: 10s, 500ms, 2m")
      ->capture_default_str();
  app.add_option("--requests", f.requests, "Stop after this many clicks (0: duration only)");
  app.add_option("--connections", f.connections, "Concurrent connections")->capture_default_str();
  app.add_option("--threads", f.threads, "Threads, each with its own io_context")
      ->capture_default_str();
  app.add_option("--rate", f.rate, "Clicks per second in total: open loop; absent: closed loop");
  app.add_option("--codes", f.codes, "Number of link codes")->capture_default_str();
  app.add_option("--zipf", f.zipf, "Popularity skew of the codes (Zipf exponent)")
      ->capture_default_str();
  app.add_option("--new-conn-share", f.new_conn_share,
                 "Share of clicks sent on a new connection of their own")
      ->capture_default_str();
  app.add_option("--bot-share", f.bot_share, "Share of clicks with a crawler user agent")
      ->capture_default_str();
  app.add_option("--conversions-per-click", f.conversions_per_click,
                 "Share of clicks followed by POST /v1/conversions (a sale naming the click)")
      ->capture_default_str();
  app.add_option("--admin-url", f.admin_url,
                 "earnd's admin listener, for --setup and /metrics (key from EARND_ADMIN_KEY)");
  app.add_flag("--setup", f.setup,
               "Create program 'bench' and its links <prefix>000.. through the admin API first");
  app.add_option("--code-prefix", f.code_prefix, "Prefix of the bench link codes")
      ->capture_default_str();
  app.add_option("--code", f.code, "Click only this one existing code");
  app.add_option("--program-key", f.program_key, "Program key for conversions without --setup")
      ->envname("EARND_PROGRAM_KEY");
  app.add_option("--currency", f.currency, "Currency of the conversions")->capture_default_str();
  app.add_option("--timeout", f.timeout,
                 "Per-request timeout; a run waits up to this long after --duration for answers "
                 "still due (at most 1m)")
      ->capture_default_str();
  app.add_option("--server-pid", f.server_pid,
                 "earnd's pid, for its CPU time and memory from /proc/<pid>/stat");
  app.add_option("--seed", f.seed, "Seed of the random choices")->capture_default_str();
  app.add_option("--json", f.json_file, "Write the result as JSON to this file");
}

// Every run is bounded: a day at most, and a timeout of at most a minute.
constexpr std::chrono::hours kMaxDuration{24};
constexpr std::chrono::minutes kMaxTimeout{1};
constexpr double kMaxRate = 10'000'000;  // clicks/s: beyond any one server
constexpr double kMinRate = 0.01;        // one click in 100 s
constexpr std::int64_t kMaxRequests = 1'000'000'000'000;
constexpr std::chrono::milliseconds kMinTimeout{10};  // the sweeper's tick
constexpr unsigned kMaxConnections = 60'000;
constexpr unsigned kMaxThreads = 1024;
constexpr std::size_t kMaxCodes = 10'000'000;
constexpr double kMaxZipf = 100;

std::chrono::nanoseconds duration_flag(const std::string& text,
                                       const char* name,
                                       std::chrono::nanoseconds max = kMaxDuration) {
  auto d = parse_duration(text);
  if (!d || d->count() <= 0) {
    throw UsageError(std::string(name) + ": '" + text +
                     "' is not a positive duration such as 10s or 500ms (at most " +
                     std::to_string(std::chrono::duration_cast<std::chrono::seconds>(max).count()) +
                     " s)");
  }
  if (std::string_view(name) == "--timeout" && *d < kMinTimeout) {
    throw UsageError("--timeout: at least 10ms (timeouts are checked every 10 ms)");
  }
  if (*d > max) {
    throw UsageError(std::string(name) + ": '" + text + "' is longer than the limit of " +
                     std::to_string(std::chrono::duration_cast<std::chrono::seconds>(max).count()) +
                     " s");
  }
  return *d;
}

// A finite number in [lo, hi] (NaN and infinities refused).
void check_range(double v, double lo, double hi, const char* name) {
  if (!std::isfinite(v) || v < lo || v > hi) {
    throw UsageError(fmt::format("{} must be a number from {} to {}, not {}", name, lo, hi, v));
  }
}

Scenario validate(const Flags& f) {
  if (f.url.empty()) {
    throw UsageError("--url is required (earnd's public listener, e.g. http://127.0.0.1:8080)");
  }
  if (f.connections == 0 || f.threads == 0 || f.codes == 0) {
    throw UsageError("--connections, --threads and --codes must be at least 1");
  }
  if (f.connections > kMaxConnections || f.threads > kMaxThreads || f.codes > kMaxCodes) {
    throw UsageError(
        fmt::format("--connections is at most {}, --threads at most {} and --codes at most {}",
                    kMaxConnections, kMaxThreads, kMaxCodes));
  }
  // 0 (the default) is a closed loop; an open loop's rate is finite and below any server's.
  check_range(f.rate, 0, kMaxRate, "--rate (clicks per second; 0 or absent: closed loop)");
  if (f.rate > 0 && f.rate < kMinRate) {
    throw UsageError(
        fmt::format("--rate must be at least {} clicks per second (0 or absent: "
                    "closed loop), not {}",
                    kMinRate, f.rate));
  }
  if (f.requests > kMaxRequests) {
    throw UsageError(fmt::format("--requests is at most {}", kMaxRequests));
  }
  for (const std::string* c : {&f.code, &f.code_prefix}) {
    if (c->size() > 64 ||
        c->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                             "0123456789_-") != std::string::npos) {
      throw UsageError("--code and --code-prefix: letters, digits, '_' and '-' only, at most 64");
    }
  }
  check_range(f.zipf, 0, kMaxZipf, "--zipf");
  if (f.requests < 0) {
    throw UsageError("--requests cannot be negative (0: the duration alone bounds the run)");
  }
  if (f.server_pid < 0) {
    throw UsageError("--server-pid must be a process id");
  }
  check_range(f.new_conn_share, 0, 1, "--new-conn-share");
  check_range(f.bot_share, 0, 1, "--bot-share");
  check_range(f.conversions_per_click, 0, 1, "--conversions-per-click");

  return Scenario{
      .url = f.url,
      .rate = f.rate,
      .connections = f.connections,
      .threads = std::min(f.threads, f.connections),
      .codes = f.code.empty() ? f.codes : 1,
      .zipf = f.zipf,
      .new_conn_share = f.new_conn_share,
      .bot_share = f.bot_share,
      .conversions_per_click = f.conversions_per_click,
      .duration_s = duration_flag(f.duration, "--duration").count() / 1e9,
      .max_requests = static_cast<std::uint64_t>(f.requests),
      .timeout_s = duration_flag(f.timeout, "--timeout", kMaxTimeout).count() / 1e9,
  };
}

HttpEndpoint endpoint_flag(const std::string& url, const char* name) {
  auto e = parse_http_url(url);
  if (!e) {
    throw UsageError(std::string(name) + ": '" + url + "' is not http://HOST:PORT");
  }
  return *e;
}

json::object program_body(const std::string& currency) {
  return {
      {"id", kBenchProgram},
      {"name", "earnbench"},
      {"currency", currency},
      {"destination", "https://shop.example.com/landing?src=bench"},
      {"allowed_hosts", json::array{"shop.example.com"}},
      {"attribution",
       {{"model", "last_click"}, {"window_days", 30}, {"cookie_days", 30}, {"dedupe_minutes", 60}}},
      {"rewards", json::array{json::object{{"event", "sale"},
                                           {"referrer", {{"percent", 10}, {"max_minor", 10000}}}}}},
      {"hold_days", 0},
  };
}

std::string key_from(const HttpReply& r) {
  auto v = json::parse(r.body);
  return json::value_to<std::string>(v.at("program_key"));
}

// Creates program `bench` (or, when it exists and a key is needed, rotates its keys: the key
// is shown only once) and one referrer per code. Returns the program key, or "" when the
// program existed and no key was asked for.
std::string setup_bench(AdminClient& admin,
                        const std::vector<std::string>& codes,
                        const std::string& currency,
                        bool need_key) {
  std::string key;
  HttpReply created = admin.call("POST", "/v1/programs", json::serialize(program_body(currency)));
  if (created.status == 201) {
    key = key_from(created);
  } else if (created.status == 409 && need_key) {
    HttpReply rotated = admin.call("POST", std::string("/v1/programs/") + kBenchProgram + "/keys");
    if (rotated.status != 200) {
      throw UsageError("setup: rotating the bench program's keys answered " +
                       std::to_string(rotated.status) + ": " + rotated.body);
    }
    key = key_from(rotated);
  } else if (created.status != 409) {
    throw UsageError("setup: creating program bench answered " + std::to_string(created.status) +
                     ": " + created.body);
  }

  std::string target = std::string("/v1/programs/") + kBenchProgram + "/referrers";
  for (const std::string& code : codes) {
    json::object body{{"external_id", "bench-" + code}, {"name", "bench " + code}, {"code", code}};
    HttpReply r = admin.call("POST", target, json::serialize(body));
    if (r.status != 201 && r.status != 409) {
      throw UsageError("setup: creating link " + code + " answered " + std::to_string(r.status) +
                       ": " + r.body);
    }
  }
  std::cerr << "earnbench: setup done: program " << kBenchProgram << ", " << codes.size()
            << " links\n";
  return key;
}

// Reads /metrics; an empty snapshot (and the reason in `skipped`) when it cannot.
MetricsSnapshot read_metrics(AdminClient* admin, std::string& skipped) {
  if (admin == nullptr) {
    return {};
  }
  try {
    HttpReply r = admin->call("GET", "/metrics");
    if (r.status == 200) {
      return MetricsSnapshot::parse(r.body);
    }
    skipped = "/metrics answered " + std::to_string(r.status);
  } catch (const std::exception& e) {
    skipped = e.what();
  }
  return {};
}

std::optional<ProcUsage> read_proc(int pid) {
  return pid > 0 ? read_proc_usage(static_cast<pid_t>(pid)) : std::nullopt;
}

RunResult collect(const Scenario& s, const LoadResult& load) {
  const LoadStats& st = load.stats;
  RunResult r;
  r.scenario = s;
  r.elapsed_s = static_cast<double>(load.elapsed.count()) / 1e9;
  r.requests = st.responses;
  r.redirects = st.by_status[302];
  r.new_connections = st.new_connections;
  r.bot_requests = st.bot_requests;
  r.latency = summarize(st.latency);
  r.errors.connect = st.connect_errors;
  r.errors.write = st.write_errors;
  r.errors.read = st.read_errors;
  r.errors.timeout = st.timeouts;
  for (unsigned code = 0; code < st.by_status.size(); ++code) {
    if (code != 302 && st.by_status[code] > 0) {
      r.errors.status[code] = st.by_status[code];
    }
  }
  r.conversions_sent = st.conversions_sent;
  r.conversions_accepted = st.conversions_accepted;
  r.machine_cpus = std::thread::hardware_concurrency();
  r.interrupted = load.interrupted;
  return r;
}

void write_json(const std::string& path, const json::object& doc) {
  std::ofstream out(path);
  out << pretty_json(doc);
  if (!out) {
    throw UsageError("cannot write " + path + ": " + std::strerror(errno));
  }
}

// Before the run: a result file that cannot be written would waste it.
void check_writable(const std::string& path) {
  if (path.empty()) {
    throw UsageError("--json needs a file name");
  }
  std::error_code ec;
  bool existed = std::filesystem::exists(path, ec);
  if (existed && !std::filesystem::is_regular_file(path, ec)) {
    throw UsageError("--json: " + path + " is not a regular file");
  }
  {
    std::ofstream probe(path, std::ios::app);
    if (!probe) {
      throw UsageError("--json: cannot write " + path + ": " + std::strerror(errno));
    }
  }
  if (!existed) {
    std::filesystem::remove(path, ec);  // no empty file left behind if the run never happens
  }
}

int run_bench(const Flags& f) {
  Scenario scenario = validate(f);
  LoadOptions opt{
      .endpoint = endpoint_flag(f.url, "--url"),
      .codes = bench_codes(f.code_prefix, f.codes, f.code),
      .zipf = f.zipf,
      .duration = duration_flag(f.duration, "--duration"),
      .max_requests = static_cast<std::uint64_t>(f.requests),
      .connections = f.connections,
      .threads = scenario.threads,
      .rate = f.rate,
      .new_conn_share = f.new_conn_share,
      .bot_share = f.bot_share,
      .conversions_per_click = f.conversions_per_click,
      .program_key = f.program_key,
      .currency = f.currency,
      .timeout = duration_flag(f.timeout, "--timeout", kMaxTimeout),
      .seed = f.seed,
      .interrupt = &g_interrupted,
  };

  // The admin listener is optional: without it there is no set-up and no server figures.
  std::optional<AdminClient> admin;
  std::string skipped;
  const char* key = std::getenv("EARND_ADMIN_KEY");
  if (f.admin_url.empty()) {
    skipped = "no --admin-url";
  } else if (key == nullptr || *key == '\0') {
    skipped = "EARND_ADMIN_KEY is not set";
  } else {
    admin.emplace(endpoint_flag(f.admin_url, "--admin-url"), key);
  }
  if (f.json_set) {
    check_writable(f.json_file);
  }
  if (f.server_pid > 0 && !read_proc(f.server_pid)) {
    throw UsageError("--server-pid " + std::to_string(f.server_pid) +
                     ": no such process to measure (/proc/" + std::to_string(f.server_pid) +
                     "/stat cannot be read)");
  }
  if (f.setup) {
    if (!admin) {
      throw UsageError("--setup needs --admin-url and EARND_ADMIN_KEY (" + skipped + ")");
    }
    std::string program_key =
        setup_bench(*admin, opt.codes, f.currency, f.conversions_per_click > 0);
    if (!program_key.empty()) {
      opt.program_key = program_key;
    }
  }
  if (opt.conversions_per_click > 0 && opt.program_key.empty()) {
    std::cerr << "earnbench: no program key (--setup, --program-key or EARND_PROGRAM_KEY): "
                 "sending no conversions\n";
    opt.conversions_per_click = 0;
    scenario.conversions_per_click = 0;
  }

  AdminClient* admin_ptr = admin ? &*admin : nullptr;
  MetricsSnapshot before = read_metrics(admin_ptr, skipped);
  auto proc_before = read_proc(f.server_pid);
  catch_interrupts();
  LoadResult load = run_load(opt);
  auto proc_after = read_proc(f.server_pid);
  MetricsSnapshot after = read_metrics(admin_ptr, skipped);

  RunResult result = collect(scenario, load);
  result.server = server_figures(before, after, proc_before, proc_after, result.elapsed_s,
                                 result.requests + result.conversions_sent);
  if (before.empty() || after.empty()) {
    result.server.skipped = skipped.empty() ? "/metrics was empty" : skipped;
  }
  if (f.server_pid > 0 && !proc_before) {
    result.server.cpu_source =
        "skipped: cannot read /proc/" + std::to_string(f.server_pid) + "/stat";
  }

  std::cout << summary_text(result);
  if (f.json_set) {
    write_json(f.json_file, to_json(result));
  }
  if (result.interrupted || g_interrupted.load()) {
    return 130;
  }
  // A run in which nothing was redirected measured no capacity: say so in the exit status too.
  if (result.redirects == 0) {
    std::cerr << "earnbench: no click was answered 302 in " << result.elapsed_s << " s ("
              << error_line(result.errors) << "): check --url, --code and --duration\n";
    return 1;
  }
  return 0;
}

int run_plan(const PlanFlags& p) {
  if (p.from_json.empty()) {
    std::cerr << "earnbench plan needs a measured run: run earnbench against earnd on this machine "
                 "with --admin-url, --server-pid and --json RESULT.json, then pass "
                 "--from-json RESULT.json\n";
    return 2;
  }
  std::string text = read_small_file(p.from_json, 64 << 20, "--from-json");
  boost::system::error_code ec;
  json::value doc = json::parse(text, ec);
  if (ec) {
    throw UsageError(p.from_json + " is not JSON: " + ec.message());
  }
  if (auto problem = invalid_plan_request(p.request)) {
    throw UsageError(*problem);
  }
  MeasuredRun run = measured_run_from_json(doc, p.from_json);
  std::cout << plan_text(p.request, run, make_plan(p.request, run));
  return 0;
}

void add_plan_options(CLI::App& plan, PlanFlags& p) {
  plan.add_option("--clicks-per-day", p.request.clicks_per_day, "Clicks per day")->required();
  plan.add_option("--peak-factor", p.request.peak_factor, "Peak rate over the day's mean")
      ->required();
  plan.add_option("--retention-days", p.request.retention_days, "Days clicks are kept")->required();
  plan.add_option("--from-json", p.from_json,
                  "Result file of a measured earnbench run (needed: the plan scales from it)");
  plan.add_option("--target-utilization", p.request.target_utilization,
                  "Share of each core the peak may use")
      ->capture_default_str();
  plan.add_option("--disk-headroom", p.request.disk_headroom,
                  "Factor over the bytes written per click")
      ->capture_default_str();
  plan.add_option("--memory-headroom", p.request.memory_headroom,
                  "Factor over the measured resident set")
      ->capture_default_str();
  plan.add_option("--disk-bytes-per-click", p.request.disk_bytes_per_click,
                  "Bytes on disk per click after compaction (earnctl stats --compact); default: "
                  "the run's bytes before compression");
}

// The scenario file, parsed as TOML before CLI11 reads it: a syntax error or an unknown key
// names the file and the line instead of surfacing as a confusing flag error. Keys are the
// run's long flags without the dashes.
// The scenario file (--scenario FILE, TOML; keys are the run's long flags without the dashes)
// turned into flags placed before the command line's, for keys the command line does not set:
// the command line wins, and CLI11 checks every value as it checks a flag. A syntax error, an
// unknown key or a value that is not a number, string or boolean names the file and line.
std::vector<std::string> with_scenario(int argc,
                                       char** argv,
                                       const CLI::App& app,
                                       std::string& path) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::set<std::string> given;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) {
      continue;
    }
    std::string name = a.substr(0, a.find('='));
    given.insert(name);
    if (name == "--scenario") {
      if (!path.empty()) {
        throw UsageError("--scenario given twice");
      }
      path = a.size() > name.size() ? a.substr(name.size() + 1)
                                    : (i + 1 < args.size() ? args[i + 1] : "");
      if (path.empty()) {
        throw UsageError("--scenario needs a file name");
      }
    }
  }
  if (path.empty()) {
    return args;
  }
  std::string text = read_small_file(path, 1 << 20, "scenario");
  toml::table t;
  try {
    t = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw UsageError(fmt::format("scenario {}: {} (line {}, column {})", path, e.description(),
                                 e.source().begin.line, e.source().begin.column));
  }
  std::vector<std::string> from_file;
  for (const auto& [key, value] : t) {
    std::string name = "--" + std::string(key.str());
    const CLI::Option* opt = nullptr;
    try {
      opt = app.get_option(name);
    } catch (const CLI::OptionNotFound&) {
    }
    auto line = key.source().begin.line;
    if (opt == nullptr || name == "--scenario" || name == "--help") {
      throw UsageError(
          fmt::format("scenario {}: unknown key '{}' (line {}): the keys are the "
                      "run's flags without the leading dashes",
                      path, key.str(), line));
    }
    if (given.count(name) > 0) {
      continue;  // the command line overrides the file
    }
    std::string v;
    if (auto i = value.value<std::int64_t>(); i && value.is_integer()) {
      v = std::to_string(*i);
    } else if (auto d = value.value<double>(); d && value.is_floating_point()) {
      v = fmt::format("{}", *d);
    } else if (auto str = value.value<std::string>()) {
      v = *str;
    } else if (auto b = value.value<bool>()) {
      if (opt->get_expected_min() == 0) {  // a flag such as --setup: present or absent
        if (*b) {
          from_file.push_back(name);
        }
        continue;
      }
      v = *b ? "true" : "false";
    } else {
      throw UsageError(
          fmt::format("scenario {}: '{}' (line {}) must be a number, a string or "
                      "true/false",
                      path, key.str(), line));
    }
    from_file.push_back(name);
    from_file.push_back(v);
  }
  from_file.insert(from_file.end(), args.begin(), args.end());
  return from_file;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"earnbench: load generator and capacity planner for earnd"};
  Flags flags;
  PlanFlags plan_flags;
  add_run_options(app, flags);
  std::string scenario_file;  // set by with_scenario, before (and whatever) CLI11 parses
  std::string scenario_flag;
  app.add_option("--scenario", scenario_flag,
                 "TOML scenario file whose keys are the flags without the dashes (flags given "
                 "here win)")
      ->type_name("FILE");
  CLI::App* plan = app.add_subcommand("plan", "Cores, memory and disk for a load, from a run");
  add_plan_options(*plan, plan_flags);
  std::vector<std::string> args;
  try {
    bool is_plan = argc > 1 && std::string_view(argv[1]) == "plan";
    args = is_plan ? std::vector<std::string>(argv + 1, argv + argc)
                   : with_scenario(argc, argv, app, scenario_file);
  } catch (const std::exception& e) {
    std::cerr << "earnbench: " << e.what() << "\n";
    return 2;
  }
  // Every usage error exits 2 (CLI11's own codes vary by kind); --help exits 0.
  std::reverse(args.begin(), args.end());  // CLI11 takes the vector form last argument first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    if (rc != 0 && !scenario_file.empty()) {
      std::cerr << "(the values may come from the scenario " << scenario_file << ")\n";
    }
    return rc == 0 ? 0 : 2;
  }
  flags.json_set = app.count("--json") > 0;

  try {
    return plan->parsed() ? run_plan(plan_flags) : run_bench(flags);
  } catch (const std::exception& e) {
    std::cerr << "earnbench: " << e.what() << "\n";
    return 2;
  }
}
