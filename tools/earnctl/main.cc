// earnctl: earnd's admin and batch command line. Talks to a running server's admin listener
// (--url or EARND_URL, with EARND_ADMIN_KEY), or works offline on a data directory (--data-dir).

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>

#include "earnd/common/click.h"
#include "earnd/store/store.h"
#include "http_client.h"

namespace {

struct Remote {
  std::string url;
  std::string key;
};

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

// Prints the body, and fails (exit 1) on a status of 400 or above.
int print_result(const earnctl::HttpResult& r) {
  std::cout << r.body;
  if (!r.body.empty() && r.body.back() != '\n') {
    std::cout << '\n';
  }
  if (r.status >= 400) {
    std::cerr << "earnctl: the server answered " << r.status << "\n";
    return 1;
  }
  return 0;
}

int call(const Remote& remote, std::string_view method, const std::string& target,
         const std::string& body = "") {
  if (remote.key.empty()) {
    std::cerr << "earnctl: set EARND_ADMIN_KEY (or --admin-key) to call the admin API\n";
    return 2;
  }
  return print_result(earnctl::call(remote.url, remote.key, method, target, body));
}

std::string read_json_arg(const std::string& arg) {
  if (arg == "-") {
    std::stringstream s;
    s << std::cin.rdbuf();
    return s.str();
  }
  if (!arg.empty() && arg[0] == '@') {
    std::ifstream in(arg.substr(1));
    if (!in) {
      throw std::runtime_error("cannot read " + arg.substr(1));
    }
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  return arg;
}

std::string query_escape(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

int export_offline(const std::string& dir, std::uint64_t from, std::uint64_t to,
                   const std::string& program) {
  auto store = earnd::store::Store::open(
      {.data_dir = dir, .mode = earnd::store::OpenMode::kReadOnly, .block_cache_mb = 16});
  std::string out(earnd::kClickCsvHeader);
  auto scanned = store->scan_clicks(from, to, [&](const earnd::ClickRecord& c) {
    if (program.empty() || c.program == program) {
      earnd::append_click_csv(c, out);
      if (out.size() > (1 << 20)) {
        std::cout << out;
        out.clear();
      }
    }
    return true;
  });
  std::cout << out;
  if (!scanned) {
    std::cerr << "earnctl: reading clicks failed: " << scanned.error().message() << "\n";
    return 1;
  }
  if (*scanned > 0) {
    std::cerr << "earnctl: skipped " << *scanned << " corrupt click records\n";
  }
  return 0;
}

// Counts the clicks of a stopped server's data directory and the bytes its SST files take,
// optionally after a full compaction (the figure for bytes per click).
int store_stats(const std::string& dir, bool compact) {
  auto store = earnd::store::Store::open({.data_dir = dir, .block_cache_mb = 16});
  if (compact) {
    if (auto ec = store->compact_all()) {
      std::cerr << "earnctl: compaction failed: " << ec.message() << "\n";
      return 1;
    }
  }
  std::uint64_t clicks = 0;
  auto scanned = store->scan_clicks(0, UINT64_MAX, [&](const earnd::ClickRecord&) {
    ++clicks;
    return true;
  });
  if (!scanned) {
    std::cerr << "earnctl: reading clicks failed: " << scanned.error().message() << "\n";
    return 1;
  }
  std::uint64_t bytes = store->live_sst_bytes();
  std::cout << "clicks=" << clicks << " sst_bytes=" << bytes << " bytes_per_click="
            << (clicks ? static_cast<double>(bytes) / static_cast<double>(clicks) : 0.0)
            << " compacted=" << (compact ? "yes" : "no") << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"earnctl: admin and batch command line for earnd"};
  app.require_subcommand(1);
  Remote remote{env_or("EARND_URL", "http://127.0.0.1:8081"), env_or("EARND_ADMIN_KEY", "")};
  app.add_option("--url", remote.url, "admin URL of a running earnd (or EARND_URL)");
  app.add_option("--admin-key", remote.key, "admin key (or EARND_ADMIN_KEY)");
  int rc = 0;

  // export clicks
  auto* exp = app.add_subcommand("export", "export data as CSV");
  exp->require_subcommand(1);
  auto* exp_clicks = exp->add_subcommand("clicks", "clicks, oldest first");
  std::string data_dir, from, to, program;
  exp_clicks->add_option("--data-dir", data_dir, "read a data directory instead of a server");
  exp_clicks->add_option("--from", from, "start: Unix ms, date or RFC 3339 time (inclusive)");
  exp_clicks->add_option("--to", to, "end: Unix ms, date or RFC 3339 time (exclusive; a date includes that day)");
  exp_clicks->add_option("--program", program, "only this program's clicks");
  exp_clicks->callback([&] {
    if (!data_dir.empty()) {
      auto ms = [](const std::string& s, std::uint64_t def) {
        return s.empty() ? def : std::stoull(s);
      };
      rc = export_offline(data_dir, ms(from, 0), ms(to, UINT64_MAX), program);
      return;
    }
    std::string target = "/v1/clicks/export?from=" + query_escape(from) +
                         "&to=" + query_escape(to) + "&program=" + query_escape(program);
    rc = call(remote, "GET", target);
  });

  // programs
  auto* prog = app.add_subcommand("program", "programs");
  prog->require_subcommand(1);
  std::string json_arg, id;
  auto* prog_create = prog->add_subcommand("create", "create a program from JSON (text, @file or -)");
  prog_create->add_option("json", json_arg)->required();
  prog_create->callback([&] { rc = call(remote, "POST", "/v1/programs", read_json_arg(json_arg)); });
  auto* prog_get = prog->add_subcommand("get", "show a program");
  prog_get->add_option("id", id)->required();
  prog_get->callback([&] { rc = call(remote, "GET", "/v1/programs/" + query_escape(id)); });
  auto* prog_patch = prog->add_subcommand("patch", "change fields of a program");
  prog_patch->add_option("id", id)->required();
  prog_patch->add_option("json", json_arg)->required();
  prog_patch->callback([&] {
    rc = call(remote, "PATCH", "/v1/programs/" + query_escape(id), read_json_arg(json_arg));
  });
  auto* prog_keys = prog->add_subcommand("rotate-keys", "issue new program keys");
  prog_keys->add_option("id", id)->required();
  prog_keys->callback([&] { rc = call(remote, "POST", "/v1/programs/" + query_escape(id) + "/keys"); });

  // referrers
  auto* ref = app.add_subcommand("referrer", "referrers");
  ref->require_subcommand(1);
  auto* ref_add = ref->add_subcommand("add", "enrol a referrer: PROGRAM JSON");
  ref_add->add_option("program", program)->required();
  ref_add->add_option("json", json_arg)->required();
  ref_add->callback([&] {
    rc = call(remote, "POST", "/v1/programs/" + query_escape(program) + "/referrers",
              read_json_arg(json_arg));
  });

  // links
  auto* link = app.add_subcommand("link", "links");
  link->require_subcommand(1);
  auto* link_add = link->add_subcommand("add", "another link for a referrer: JSON");
  link_add->add_option("json", json_arg)->required();
  link_add->callback([&] { rc = call(remote, "POST", "/v1/links", read_json_arg(json_arg)); });
  std::string referrer;
  auto* link_list = link->add_subcommand("list", "list links");
  link_list->add_option("--program", program);
  link_list->add_option("--referrer", referrer);
  link_list->callback([&] {
    rc = call(remote, "GET",
              "/v1/links?program=" + query_escape(program) + "&referrer_id=" + query_escape(referrer));
  });
  auto* link_patch = link->add_subcommand("patch", "change a link: CODE JSON");
  link_patch->add_option("code", id)->required();
  link_patch->add_option("json", json_arg)->required();
  link_patch->callback([&] {
    rc = call(remote, "PATCH", "/v1/links/" + query_escape(id), read_json_arg(json_arg));
  });

  // store stats
  auto* stats = app.add_subcommand("stats", "clicks and bytes on disk of a stopped server's data");
  bool compact = false;
  stats->add_option("--data-dir", data_dir, "data directory")->required();
  stats->add_flag("--compact", compact, "compact fully first");
  stats->callback([&] { rc = store_stats(data_dir, compact); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "earnctl: " << e.what() << "\n";
    return 1;
  }
  return rc;
}
