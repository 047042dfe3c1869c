#include "server_fixture.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace earnd::integration {
namespace json = boost::json;

namespace {

// The query of a URL, without '?' and fragment.
std::string_view query_of(std::string_view url) {
  std::size_t q = url.find('?');
  if (q == std::string_view::npos) {
    return {};
  }
  std::string_view query = url.substr(q + 1);
  return query.substr(0, query.find('#'));
}

// Calls fn(name, value) for each name=value pair of a query.
template <typename Fn>
void for_each_param(std::string_view query, Fn&& fn) {
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? "" : query.substr(amp + 1);
    std::size_t eq = pair.find('=');
    fn(pair.substr(0, eq), eq == std::string_view::npos ? "" : pair.substr(eq + 1));
  }
}

std::vector<std::string> split(std::string_view line, char sep) {
  std::vector<std::string> out;
  while (true) {
    std::size_t at = line.find(sep);
    out.emplace_back(line.substr(0, at));
    if (at == std::string_view::npos) {
      return out;
    }
    line.remove_prefix(at + 1);
  }
}

constexpr std::string_view kExportHeader =
    "click_id,ts_ms,program,referrer_id,code,visitor_hash,unique,reason";

}  // namespace

std::string query_param(std::string_view url, std::string_view name) {
  std::string found;
  bool seen = false;
  for_each_param(query_of(url), [&](std::string_view n, std::string_view v) {
    if (!seen && n == name) {
      found = v;
      seen = true;
    }
  });
  return found;
}

int query_param_count(std::string_view url, std::string_view name) {
  int count = 0;
  for_each_param(query_of(url), [&](std::string_view n, std::string_view) { count += n == name; });
  return count;
}

std::string click_id_of(const HttpResponse& redirect) {
  return query_param(redirect.header("Location").value_or(""), "earnd_cid");
}

bool looks_like_click_id(std::string_view id) {
  constexpr std::string_view kAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";
  return id.size() == 26 && std::all_of(id.begin(), id.end(), [&](char c) {
           return kAlphabet.find(c) != std::string_view::npos;
         });
}

json::value parse_json(const HttpResponse& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  if (ec) {
    ADD_FAILURE() << "not JSON (" << ec.message() << "): " << r.body;
    return nullptr;
  }
  return v;
}

// The process object exists from the start so that server() is always valid; start_server()
// replaces it with one that carries the test's arguments.
EarndTest::EarndTest() : server_(std::make_unique<EarndProcess>(EarndOptions{})) {}

// The process goes first (killed if a test left it running), then the directory.
EarndTest::~EarndTest() {
  server_.reset();
}

void EarndTest::use_config(std::string_view toml) {
  config_file_ = temp_.path() / "earnd.toml";
  std::ofstream(config_file_) << toml;
}

void EarndTest::start_server(std::vector<std::string> extra_args) {
  EarndOptions options{
      .binary = std::filesystem::path(EARND_BIN_DIR) / "earnd",
      .data_dir = data_dir(),
      .log_file = temp_.path() / "earnd.log",
      .admin_key = std::string(kAdminKey),
      .config_file = config_file_,
      .extra_args = std::move(extra_args),
  };
  server_ = std::make_unique<EarndProcess>(std::move(options));
  std::string error = server_->start();
  ASSERT_EQ(error, "") << "earnd did not start";
}

int EarndTest::stop_server() {
  int code = server_->stop();
  if (code != 0) {
    ADD_FAILURE() << "earnd exited with " << code << "\n--- earnd log ---\n" << server_->log_text();
  }
  return code;
}

HttpResponse EarndTest::admin(std::string_view method,
                              std::string_view target,
                              std::string_view body,
                              std::string_view key) {
  Headers headers = {{"Content-Type", "application/json"}};
  if (!key.empty()) {
    headers.emplace_back("Authorization", "Bearer " + std::string(key));
  }
  return fetch(admin_endpoint(), method, target, headers, body);
}

HttpResponse EarndTest::visit(std::string_view target,
                              std::string_view user_agent,
                              std::string_view method) {
  return fetch(public_endpoint(), method, target, {{"User-Agent", std::string(user_agent)}});
}

void EarndTest::create_program(std::string_view id) {
  json::object program = {
      {"id", id},
      {"name", "Acme"},
      {"currency", "USD"},
      {"destination", kDestination},
      {"allowed_hosts", json::array{"shop.example.com"}},
      {"attribution",
       {{"model", "last_click"},
        {"window_days", 30},
        {"cookie_days", kCookieDays},
        {"dedupe_minutes", 60}}},
  };
  HttpResponse r = admin("POST", "/v1/programs", json::serialize(program));
  EXPECT_EQ(r.status, 201) << r.error << r.body;
}

std::string EarndTest::enrol(std::string_view external_id,
                             std::string_view code,
                             std::string_view program) {
  json::object body = {{"external_id", external_id}, {"name", "Ana"}, {"code", code}};
  std::string target = "/v1/programs/" + std::string(program) + "/referrers";
  HttpResponse r = admin("POST", target, json::serialize(body));
  EXPECT_EQ(r.status, 201) << r.error << r.body;
  json::value v = parse_json(r);
  if (!v.is_object() || !v.as_object().contains("id") || !v.at("id").is_string()) {
    ADD_FAILURE() << "no referrer id in " << r.body;
    return {};
  }
  return std::string(v.at("id").as_string());
}

std::vector<ExportedClick> EarndTest::export_clicks() {
  std::string earnctl = (std::filesystem::path(EARND_BIN_DIR) / "earnctl").string();
  CommandResult r =
      run_command({earnctl, "export", "clicks", "--data-dir", data_dir().string()}, scratch_dir());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<ExportedClick> clicks;
  std::istringstream lines(r.out);
  std::string line;
  if (!std::getline(lines, line) || line != kExportHeader) {
    ADD_FAILURE() << "unexpected export header: " << line;
    return clicks;
  }
  while (std::getline(lines, line)) {
    std::vector<std::string> f = split(line, ',');
    if (f.size() != 8) {
      ADD_FAILURE() << "export row without 8 fields: " << line;
      continue;
    }
    clicks.push_back({.id = f[0],
                      .ts_ms = std::stoull(f[1]),
                      .program = f[2],
                      .referrer_id = f[3],
                      .code = f[4],
                      .visitor_hash = f[5],
                      .unique = f[6] == "1",
                      .reason = f[7]});
  }
  return clicks;
}

}  // namespace earnd::integration
