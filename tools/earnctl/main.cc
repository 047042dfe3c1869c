// earnctl: earnd's admin and batch command line. Talks to a running server's admin listener
// (--url or EARND_URL, with EARND_ADMIN_KEY), or works offline on a data directory (--data-dir).

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <boost/unordered/unordered_flat_map.hpp>

#include "earnd/attribution/matcher.h"
#include "earnd/cluster/node.h"
#include "earnd/common/click.h"
#include "earnd/common/hash.h"
#include "earnd/common/money.h"
#include "earnd/common/time.h"
#include "earnd/ingest/importer.h"
#include "earnd/links/catalog.h"
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

int call(const Remote& remote,
         std::string_view method,
         const std::string& target,
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

int export_offline(const std::string& dir,
                   std::uint64_t from,
                   std::uint64_t to,
                   const std::string& program) {
  auto store = earnd::store::Store::open(
      {.data_dir = dir, .mode = earnd::store::OpenMode::kReadOnly, .block_cache_mb = 16});
  std::string out(earnd::kClickCsvHeader);
  // A data directory of scale-out mode holds every click; its worker's held shards are listed.
  auto held = earnd::cluster::held_shards(*store);
  auto scanned = store->scan_clicks(from, to, [&](const earnd::ClickRecord& c) {
    if (held && (c.id.shard() >= held->size() || !(*held)[c.id.shard()])) {
      return true;
    }
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
            << " compacted=" << (compact ? "yes" : "no");
  for (const auto& [family, family_bytes] : store->family_sst_bytes()) {
    std::cout << " sst_bytes." << family << "=" << family_bytes;
  }
  std::cout << "\n";
  return 0;
}

// "30d", "12h", "90m", "45s", "250ms" or a plain number of milliseconds; nullopt otherwise.
std::optional<std::uint64_t> parse_duration_ms(std::string_view text) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end == text.data()) {
    return std::nullopt;
  }
  std::string_view unit(end, text.data() + text.size() - end);
  static const std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
  for (const auto& [name, ms] : kUnits) {
    if (unit == name) {
      return n * ms;
    }
  }
  return std::nullopt;
}

std::string per_second(std::uint64_t n, double seconds) {
  return std::to_string(seconds > 0 ? static_cast<std::uint64_t>(n / seconds) : n) + "/s";
}

// Opens a data directory read-write; RocksDB's lock refuses it while an earnd runs on it.
std::unique_ptr<earnd::store::Store> open_for_import(const std::string& dir) {
  try {
    return earnd::store::Store::open({.data_dir = dir, .bulk_memtables = true});
  } catch (const earnd::StartupError& e) {
    std::string what = e.what();
    if (what.find("lock") != std::string::npos) {
      what += " (is earnd running on this directory? import while it is stopped)";
    }
    throw earnd::StartupError(what);
  }
}

int import_clicks(const std::string& file,
                  const std::string& dir,
                  const std::string& program,
                  std::uint32_t shard_count) {
  auto store = open_for_import(dir);
  auto s =
      earnd::ingest::import_clicks(*store, file, {.program = program, .shard_count = shard_count});
  std::cout << std::fixed << std::setprecision(1) << "imported " << s.clicks << " clicks in "
            << s.seconds << " s (" << per_second(s.clicks, s.seconds) << "): program " << program
            << (s.programs_created ? " (created)" : "") << ", " << s.bots << " bots, " << s.unique
            << " unique, " << s.velocity << " over the velocity limit, " << s.links_created
            << " links and " << s.referrers_created << " referrers created";
  if (s.duplicates > 0) {
    std::cout << "; " << s.duplicates << " rows skipped (stored already)";
  }
  std::cout << "\n";
  return 0;
}

int import_conversions(const std::string& file,
                       const std::string& dir,
                       const std::string& program) {
  auto store = open_for_import(dir);
  auto s = earnd::ingest::import_conversions(*store, file, {.program = program});
  std::cout << std::fixed << std::setprecision(1) << "imported " << s.conversions
            << " conversions in " << s.seconds << " s (" << per_second(s.conversions, s.seconds)
            << "): program " << program << (s.programs_created ? " (created)" : "") << ", "
            << s.sales << " sales\n";
  return 0;
}

struct AttributeArgs {
  std::string data_dir;
  std::vector<std::string> nodes;  // scale-out: the workers' admin URLs (scatter and gather)
  int settle_s = 120;              // how long to wait for the cluster to finish indexing
  std::string conversions;
  std::string model = "last_click";
  std::string window = "30d";
  std::string out;
  std::string program;
};

struct Conversion {
  std::uint64_t ts_ms = 0;
  std::uint64_t visitor_hash = 0;
  std::uint64_t amount = 0;  // revenue: the amount of a sale, 0 for a signup
};

// Revenue sums in 128 bits: rows hold at most earnd::kMaxAmountMinor each, so no file of fewer
// than 2^64 rows can overflow them.
struct Tally {
  std::uint64_t conversions = 0;
  unsigned __int128 revenue = 0;

  void add(std::uint64_t n, unsigned __int128 rev) {
    conversions += n;
    revenue += rev;
  }
};

std::string decimal(unsigned __int128 v) {
  std::string out;
  do {
    out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  } while (v != 0);
  return out;
}

// One worker's share: tallies by internal referrer id.
struct Partial {
  boost::unordered_flat_map<std::string, Tally> by_referrer;
  Tally unattributed;
  earnd::ErrorCode error;
};

void attribute_range(const earnd::store::Store& store,
                     std::span<const Conversion> conversions,
                     earnd::attribution::MatchQuery query,
                     Partial& out) {
  query.need_id = false;  // the tallies need the winning referrer, not the click
  for (const Conversion& c : conversions) {
    query.visitor_hash = c.visitor_hash;
    query.at_ms = c.ts_ms;
    auto winner = earnd::attribution::match(store, query);
    if (!winner) {
      out.error = winner.error();
      return;
    }
    Tally& t = *winner ? out.by_referrer[(*winner)->referrer_id] : out.unattributed;
    t.add(1, c.amount);
  }
}

// Orders external ids as numbers when both are decimal, else as text (numbers first).
struct ExternalIdLess {
  bool operator()(const std::string& a, const std::string& b) const {
    auto numeric = [](const std::string& s) {
      return !s.empty() &&
             std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    bool na = numeric(a);
    bool nb = numeric(b);
    if (na != nb) {
      return na;
    }
    if (na && a.size() != b.size()) {
      return a.size() < b.size();
    }
    return a < b;
  }
};

int write_attribution(const std::string& path,
                      const std::map<std::string, Tally, ExternalIdLess>& rows,
                      const Tally& unattributed) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << "referrer_id,conversions,revenue_cents\n";
  for (const auto& [ext, t] : rows) {
    out << ext << ',' << t.conversions << ',' << decimal(t.revenue) << '\n';
  }
  out << ',' << unattributed.conversions << ',' << decimal(unattributed.revenue) << '\n';
  out.close();
  if (!out) {
    std::cerr << "earnctl: cannot write " << path << "\n";
    return 1;
  }
  return 0;
}

void print_summary(const AttributeArgs& a,
                   const std::map<std::string, Tally, ExternalIdLess>& rows,
                   const Tally& unattributed,
                   double seconds) {
  Tally attributed;
  std::vector<std::pair<std::string, Tally>> top(rows.begin(), rows.end());
  for (const auto& [ext, t] : top) {
    attributed.add(t.conversions, t.revenue);
  }
  std::size_t shown = std::min<std::size_t>(top.size(), 10);
  std::partial_sort(top.begin(), top.begin() + shown, top.end(), [](const auto& x, const auto& y) {
    return x.second.conversions != y.second.conversions
               ? x.second.conversions > y.second.conversions
               : x.second.revenue > y.second.revenue;
  });
  // Columns as wide as the longest value (at least the heading), a space between any two, so
  // long ids and large sums never run together.
  std::vector<std::array<std::string, 3>> lines{{"referrer_id", "conversions", "revenue_cents"}};
  for (std::size_t i = 0; i < shown; ++i) {
    lines.push_back(
        {top[i].first, std::to_string(top[i].second.conversions), decimal(top[i].second.revenue)});
  }
  lines.push_back(
      {"(unattributed)", std::to_string(unattributed.conversions), decimal(unattributed.revenue)});
  lines.push_back(
      {"(attributed)", std::to_string(attributed.conversions), decimal(attributed.revenue)});
  std::array<std::size_t, 3> width{24, 12, 16};
  for (const auto& l : lines) {
    for (std::size_t c = 0; c < 3; ++c) {
      width[c] = std::max(width[c], l[c].size() + (c == 0 ? 0 : 1));
    }
  }
  std::cout << "top referrers (" << rows.size() << " credited):\n";
  for (const auto& l : lines) {
    std::cout << std::left << std::setw(static_cast<int>(width[0])) << l[0] << std::right << ' '
              << std::setw(static_cast<int>(width[1])) << l[1]
              << std::setw(static_cast<int>(width[2])) << l[2] << "\n";
  }
  std::cout << std::fixed << std::setprecision(2) << "attributed "
            << attributed.conversions + unattributed.conversions << " conversions (" << a.model
            << ", window " << a.window << ") in " << seconds << " s; wrote " << a.out << "\n";
}

// Matches every conversion, split over up to 4 threads that each tally on their own.
std::vector<Partial> attribute_all(const earnd::store::Store& store,
                                   const std::vector<Conversion>& conversions,
                                   const earnd::attribution::MatchQuery& query) {
  unsigned workers = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
  std::vector<Partial> partials(workers);
  std::vector<std::thread> threads;
  std::size_t per = (conversions.size() + workers - 1) / workers;
  for (unsigned w = 0; w < workers; ++w) {
    std::size_t from = std::min(conversions.size(), w * per);
    std::size_t to = std::min(conversions.size(), from + per);
    threads.emplace_back(attribute_range, std::cref(store),
                         std::span<const Conversion>(conversions.data() + from, to - from), query,
                         std::ref(partials[w]));
  }
  for (auto& t : threads) {
    t.join();
  }
  return partials;
}

// --model and --window of `earnctl attribute`; nullopt (the message printed) when either is wrong.
std::optional<std::pair<earnd::attribution::Model, std::uint64_t>> model_and_window(
    const AttributeArgs& a) {
  auto model = earnd::attribution::parse_model(a.model);
  auto window = parse_duration_ms(a.window);
  if (!model || !window) {
    std::cerr << "earnctl: --model must be last_click or first_click and --window like 30d, "
                 "12h, 90m or milliseconds\n";
    return std::nullopt;
  }
  return std::pair{*model, *window};
}

int attribute(const AttributeArgs& a) {
  auto start = std::chrono::steady_clock::now();
  auto checked = model_and_window(a);
  if (!checked) {
    return 2;
  }
  auto [model, window] = *checked;
  auto store = earnd::store::Store::open(
      {.data_dir = a.data_dir, .mode = earnd::store::OpenMode::kReadOnly});
  auto secret = store->get_meta("s/" + std::string(earnd::ingest::kVisitorSecretName));
  if (!secret || !*secret) {
    std::cerr
        << "earnctl: " << a.data_dir
        << " has no visitor secret: no clicks were imported into it (earnctl import clicks)\n";
    return 1;
  }
  earnd::KeyedHasher hasher(**secret);
  auto external_ids = earnd::links::external_ids(*store);

  std::vector<Conversion> conversions;
  earnd::ingest::read_conversions_csv(a.conversions, [&](const earnd::ingest::ConversionRow& r) {
    conversions.push_back({r.ts_ms, earnd::ingest::import_visitor_hash(hasher, r.visitor_id),
                           r.kind == "sale" ? r.amount_cents : 0});
  });
  // In visitor order, consecutive lookups touch neighbouring keys of the visitor index, so they
  // share blocks in the cache instead of each reading and decompressing its own.
  std::sort(conversions.begin(), conversions.end(), [](const Conversion& x, const Conversion& y) {
    return x.visitor_hash < y.visitor_hash;
  });
  auto partials = attribute_all(*store, conversions,
                                {.window_ms = window, .model = model, .program = a.program});

  // Merge by external id (several internal referrers may share one across programs).
  std::map<std::string, Tally, ExternalIdLess> rows;
  Tally unattributed;
  for (const Partial& p : partials) {
    if (p.error) {
      std::cerr << "earnctl: reading the visitor index failed: " << p.error.message() << "\n";
      return 1;
    }
    unattributed.add(p.unattributed.conversions, p.unattributed.revenue);
    for (const auto& [id, t] : p.by_referrer) {
      auto ext = external_ids.find(id);
      rows[ext != external_ids.end() ? ext->second : id].add(t.conversions, t.revenue);
    }
  }
  if (int rc = write_attribution(a.out, rows, unattributed)) {
    return rc;
  }
  print_summary(a, rows, unattributed,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}

// Parts of a CSV file for the admin API: the header, then whole lines up to max_bytes (below
// the server's default 64 KiB body limit). next() returns false at the end of the file.
class CsvParts {
 public:
  CsvParts(const std::string& path, std::string_view header, std::size_t max_bytes)
      : in_(path), max_bytes_(max_bytes) {
    if (!in_) {
      throw std::runtime_error("cannot read " + path);
    }
    if (std::getline(in_, header_) && header_.ends_with('\r')) {
      header_.pop_back();  // CRLF files: the server reads either line end
    }
    if (!in_ ||
        std::string_view(header_).substr(header_.starts_with("\xEF\xBB\xBF") ? 3 : 0) != header) {
      throw std::runtime_error(path + ":1: expected the header " + std::string(header));
    }
  }

  // The next part (header included), its first line number and row count.
  bool next(std::string& part, std::uint64_t& first_line, std::size_t& rows) {
    part = header_ + "\n";
    first_line = line_ + 1;
    rows = 0;
    while (true) {
      if (carry_.empty() && !std::getline(in_, carry_)) {
        break;
      }
      if (rows > 0 && part.size() + carry_.size() + 1 > max_bytes_) {
        break;  // the line starts the next part
      }
      part += carry_;
      part += '\n';
      carry_.clear();
      ++rows;
      ++line_;
    }
    return rows > 0;
  }

 private:
  std::ifstream in_;
  std::size_t max_bytes_;
  std::string header_;
  std::string carry_;  // a line read that did not fit the last part
  std::uint64_t line_ = 1;
};

std::string field_of(const boost::json::value& v, std::string_view key) {
  if (const auto* o = v.if_object()) {
    if (const auto* f = o->if_contains(key)) {
      return f->is_string() ? std::string(f->get_string()) : boost::json::serialize(*f);
    }
  }
  return {};
}

std::uint64_t u64_of(const boost::json::value& v, std::string_view key) {
  const auto* o = v.if_object();
  const auto* f = o ? o->if_contains(key) : nullptr;
  return f && f->is_uint64()  ? f->get_uint64()
         : f && f->is_int64() ? static_cast<std::uint64_t>(f->get_int64())
                              : 0;
}

constexpr std::size_t kPartBytes = 60'000;

// earnctl import clicks FILE --node URL...: the file in parts through the nodes' admin APIs, one
// sender thread per node taking the next part. In scale-out mode each node spools its parts to
// the stream, so every worker indexes the whole file.
int import_clicks_remote(const std::string& file,
                         const std::vector<std::string>& nodes,
                         const std::string& key,
                         const std::string& program) {
  if (key.empty()) {
    std::cerr << "earnctl: set EARND_ADMIN_KEY (or --admin-key) to import through a server\n";
    return 2;
  }
  auto start = std::chrono::steady_clock::now();
  // The whole file is checked here first, as `--data-dir` does, so that a bad row refuses the
  // file before any part is stored.
  try {
    (void)earnd::ingest::check_clicks_csv(file);
  } catch (const earnd::ingest::ImportError& e) {
    std::cerr << "earnctl: " << e.what() << " (nothing was imported)\n";
    return 1;
  }
  CsvParts parts(file, "click_id,ts_ms,link_code,referrer_id,visitor_id,is_bot", kPartBytes);
  std::mutex mu;
  std::uint64_t clicks = 0, duplicates = 0, links = 0, referrers = 0, sent = 0;
  std::string failure;
  std::vector<std::thread> senders;
  for (const std::string& node : nodes) {
    senders.emplace_back([&, node] {
      std::string part;
      std::uint64_t first = 0;
      std::size_t rows = 0;
      while (true) {
        {
          std::lock_guard lock(mu);
          if (!failure.empty() || !parts.next(part, first, rows)) {
            return;
          }
        }
        earnctl::HttpResult r;
        try {
          r = earnctl::call(node, key, "POST", "/v1/import/clicks?program=" + query_escape(program),
                            part);
        } catch (const std::exception& e) {
          std::lock_guard lock(mu);
          failure = e.what();  // names the node
          return;
        }
        boost::system::error_code ec;
        auto v = boost::json::parse(r.body, ec);
        std::lock_guard lock(mu);
        if (r.status != 200 || ec) {
          // "body:N" in the server's message is line N of this part, whose line 1 is the
          // header: file line first + N - 2.
          std::string where = file + " lines " + std::to_string(first) + "..";
          if (auto p = r.body.find("body:"); p != std::string::npos) {
            std::uint64_t n = std::strtoull(r.body.c_str() + p + 5, nullptr, 10);
            if (n >= 2) {
              where = file + ":" + std::to_string(first + n - 2);
            }
          }
          failure = where + ": " + node + " answered " + std::to_string(r.status) + " " + r.body;
          return;
        }
        clicks += u64_of(v, "clicks");
        duplicates += u64_of(v, "duplicates");
        links += u64_of(v, "links_created");
        referrers += u64_of(v, "referrers_created");
        ++sent;
      }
    });
  }
  for (auto& t : senders) {
    t.join();
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!failure.empty()) {
    std::cerr << "earnctl: import stopped after " << clicks << " clicks: " << failure << "\n";
    return 1;
  }
  std::cout << std::fixed << std::setprecision(1) << "imported " << clicks << " clicks in " << sent
            << " parts through " << nodes.size() << " node(s) in " << secs << " s ("
            << (secs > 0 ? static_cast<double>(clicks) / secs : 0.0) << " clicks/s); " << duplicates
            << " already stored (skipped); created " << referrers << " referrers and " << links
            << " links\n";
  return 0;
}

// Waits until no node has clicks in its spool and every worker has indexed the stream up to
// its last sequence (read-after-import for the batch query). False after timeout.
bool wait_cluster_settled(const std::vector<std::string>& nodes,
                          const std::string& key,
                          std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    bool settled = true;
    for (const auto& node : nodes) {
      auto r = earnctl::call(node, key, "GET", "/v1/cluster/status", "");
      boost::system::error_code ec;
      auto v = boost::json::parse(r.body, ec);
      if (r.status != 200 || ec) {
        throw std::runtime_error(node + " answered " + std::to_string(r.status) + " " + r.body);
      }
      std::uint64_t last = u64_of(v, "stream_last_seq");
      // Catalog records (links and referrers an import created) are on every node too, so
      // every click's referrer has its external id where the click is attributed.
      std::uint64_t meta_last = u64_of(v, "meta_last_seq");
      settled = settled && u64_of(v, "spool_depth") == 0 && u64_of(v, "meta_pending") == 0 &&
                meta_last > 0 && u64_of(v, "meta_seen_seq") >= meta_last &&
                (field_of(v, "role") == "edge" || (last > 0 && u64_of(v, "applied_seq") >= last));
    }
    if (settled) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

// earnctl attribute --node URL...: scatter and gather over a cluster's workers. Each part of the
// conversions file goes to every node; each answers the rows whose visitor shard it holds; the
// sums are added. A part whose rows were not answered exactly once (shards moving between
// workers) is asked again, for up to 15 s, then the query fails: never a silent partial answer.
int attribute_remote(const AttributeArgs& a, const std::string& key) {
  auto start = std::chrono::steady_clock::now();
  auto checked = model_and_window(a);
  if (!checked) {
    return 2;
  }
  auto [model, window] = *checked;
  if (key.empty()) {
    std::cerr << "earnctl: set EARND_ADMIN_KEY (or --admin-key) to query a cluster\n";
    return 2;
  }
  if (!wait_cluster_settled(a.nodes, key, std::chrono::seconds(a.settle_s))) {
    std::cerr << "earnctl: the cluster did not finish indexing within " << a.settle_s
              << " s (spools not empty or workers behind the stream)\n";
    return 1;
  }
  std::string target = "/v1/cluster/attribute?model=" + a.model +
                       "&window_ms=" + std::to_string(window) +
                       (a.program.empty() ? "" : "&program=" + query_escape(a.program));
  CsvParts parts(a.conversions, "conv_id,ts_ms,visitor_id,amount_cents,kind", kPartBytes);
  std::map<std::string, Tally, ExternalIdLess> rows;
  Tally unattributed;
  std::string part;
  std::uint64_t first = 0;
  std::size_t count = 0;
  while (parts.next(part, first, count)) {
    bool done = false;
    // Up to 15 tries a second apart: longer than the lease TTL (10 s) that a stopped worker
    // can still be counted live for, and whose shards no one holds meanwhile.
    for (int attempt = 0; attempt < 15 && !done; ++attempt) {
      std::map<std::string, Tally, ExternalIdLess> part_rows;
      Tally part_unattributed;
      std::uint64_t answered = 0;
      for (const auto& node : a.nodes) {
        auto r = earnctl::call(node, key, "POST", target, part);
        boost::system::error_code ec;
        auto v = boost::json::parse(r.body, ec);
        if (r.status != 200 || ec) {
          std::cerr << "earnctl: " << node << " answered " << r.status << " " << r.body << "\n";
          return 1;
        }
        answered += u64_of(v, "answered");
        const auto& un = v.as_object().at("unattributed");
        part_unattributed.add(u64_of(un, "conversions"), u64_of(un, "revenue"));
        for (const auto& ref : v.as_object().at("referrers").as_array()) {
          part_rows[field_of(ref, "referrer_id")].add(u64_of(ref, "conversions"),
                                                      u64_of(ref, "revenue"));
        }
      }
      if (answered == count) {
        done = true;
        unattributed.add(part_unattributed.conversions, part_unattributed.revenue);
        for (const auto& [ext, t] : part_rows) {
          rows[ext].add(t.conversions, t.revenue);
        }
      } else {
        std::this_thread::sleep_for(std::chrono::seconds(1));  // shards in flight: ask again
      }
    }
    if (!done) {
      std::cerr << "earnctl: " << a.conversions << " lines " << first << ".." << first + count - 1
                << ": the nodes did not answer every row exactly once (a shard no listed node "
                   "holds, or shards moving); list every worker with --node\n";
      return 1;
    }
  }
  if (int rc = write_attribution(a.out, rows, unattributed)) {
    return rc;
  }
  print_summary(a, rows, unattributed,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
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
  // --url and --admin-key may also come after the subcommand.
  app.fallthrough();

  // export clicks
  auto* exp = app.add_subcommand("export", "export data as CSV");
  exp->require_subcommand(1);
  auto* exp_clicks = exp->add_subcommand("clicks", "clicks, oldest first");
  std::string data_dir, from, to, program;
  exp_clicks->add_option("--data-dir", data_dir, "read a data directory instead of a server")
      ->check(CLI::ExistingDirectory);
  exp_clicks->add_option("--from", from, "start: Unix ms, date or RFC 3339 time (inclusive)");
  exp_clicks->add_option(
      "--to", to, "end: Unix ms, date or RFC 3339 time (exclusive; a date includes that day)");
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
  auto* prog_create =
      prog->add_subcommand("create", "create a program from JSON (text, @file or -)");
  prog_create->add_option("json", json_arg)->required();
  prog_create->callback(
      [&] { rc = call(remote, "POST", "/v1/programs", read_json_arg(json_arg)); });
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
  prog_keys->callback(
      [&] { rc = call(remote, "POST", "/v1/programs/" + query_escape(id) + "/keys"); });

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
    rc = call(
        remote, "GET",
        "/v1/links?program=" + query_escape(program) + "&referrer_id=" + query_escape(referrer));
  });
  auto* link_patch = link->add_subcommand("patch", "change a link: CODE JSON");
  link_patch->add_option("code", id)->required();
  link_patch->add_option("json", json_arg)->required();
  link_patch->callback([&] {
    rc = call(remote, "PATCH", "/v1/links/" + query_escape(id), read_json_arg(json_arg));
  });

  // scale-out mode
  auto* cluster = app.add_subcommand("cluster", "scale-out mode (docs/scale-out.md)");
  cluster->require_subcommand(1);
  auto* cluster_status = cluster->add_subcommand(
      "status", "this node's cluster status: spool, forward and index lag, shards held, workers");
  cluster_status->callback([&] { rc = call(remote, "GET", "/v1/cluster/status"); });
  std::string nats_server;
  auto* cluster_drain = cluster->add_subcommand(
      "drain", "move the leaders of earnd's streams off a NATS server before stopping it");
  cluster_drain->add_option("server", nats_server, "the NATS server's server_name")->required();
  std::string since;
  auto* cluster_replay = cluster->add_subcommand(
      "replay", "read the click stream again from a time, adding clicks this node's index lacks");
  cluster_replay
      ->add_option("--since", since, "a duration back from now (30m, 2h, 7d) or an RFC 3339 time")
      ->required();
  cluster_replay->callback([&] {
    std::string at = since;
    if (auto back = parse_duration_ms(since)) {
      auto now = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
      at = earnd::format_rfc3339(now > *back ? now - *back : 0);
    }
    rc = call(remote, "POST", "/v1/cluster/replay",
              boost::json::serialize(boost::json::object{{"since", at}}));
  });
  cluster_drain->callback([&] {
    rc = call(remote, "POST", "/v1/cluster/drain",
              boost::json::serialize(boost::json::object{{"server", nats_server}}));
  });

  // store stats
  auto* stats = app.add_subcommand("stats", "clicks and bytes on disk of a stopped server's data");
  bool compact = false;
  stats->add_option("--data-dir", data_dir, "data directory")
      ->required()
      ->check(CLI::ExistingDirectory);
  stats->add_flag("--compact", compact, "compact fully first");
  stats->callback([&] { rc = store_stats(data_dir, compact); });

  // batch: import and attribute
  auto* imp = app.add_subcommand("import",
                                 "bulk-load a data directory from CSV (attribution-bench formats)");
  imp->require_subcommand(1);
  std::string file;
  std::string import_program = "default";
  auto* imp_clicks = imp->add_subcommand(
      "clicks", "clicks: click_id,ts_ms,link_code,referrer_id,visitor_id,is_bot");
  auto* imp_conv =
      imp->add_subcommand("conversions", "conversions: conv_id,ts_ms,visitor_id,amount_cents,kind");
  std::vector<std::string> import_nodes;
  for (auto* sub : {imp_clicks, imp_conv}) {
    sub->add_option("file", file, "CSV file with a header row")->required();
    sub->add_option("--program", import_program, "program id, created when missing");
  }
  imp_conv->add_option("--data-dir", data_dir, "data directory (not in use by a running earnd)")
      ->required();
  auto* clicks_dir = imp_clicks->add_option("--data-dir", data_dir,
                                            "data directory (not in use by a running earnd)");
  auto* clicks_nodes = imp_clicks->add_option(
      "--node", import_nodes,
      "instead of --data-dir: a running earnd's admin URL to import through (repeat for several "
      "edges; parts go to each in turn)");
  clicks_dir->excludes(clicks_nodes);
  std::uint32_t import_shards = earnd::kDefaultShardCount;
  imp_clicks
      ->add_option("--shard-count", import_shards,
                   "with --data-dir: the server's clicks.shard_count (the shard byte of the "
                   "imported ids)")
      ->check(CLI::Range(1, 256))
      ->excludes(clicks_nodes);
  imp_clicks->callback([&] {
    if (import_nodes.empty() && data_dir.empty()) {
      throw CLI::RequiredError("--data-dir or --node");
    }
    rc = import_nodes.empty()
             ? import_clicks(file, data_dir, import_program, import_shards)
             : import_clicks_remote(file, import_nodes, remote.key, import_program);
  });
  imp_conv->callback([&] { rc = import_conversions(file, data_dir, import_program); });

  AttributeArgs attr;
  auto* att = app.add_subcommand("attribute", "attribute a conversions CSV to imported clicks");
  auto* att_dir = att->add_option("--data-dir", attr.data_dir,
                                  "data directory (read-only; earnd may run on it)")
                      ->check(CLI::ExistingDirectory);
  auto* att_nodes = att->add_option(
      "--node", attr.nodes,
      "instead of --data-dir, scale-out mode: a worker's admin URL (repeat for every worker); "
      "the query is scattered over them and the sums gathered");
  att_dir->excludes(att_nodes);
  att->add_option("--settle", attr.settle_s,
                  "scale-out: seconds to wait for the workers to finish indexing")
      ->capture_default_str();
  att->add_option("--conversions", attr.conversions,
                  "conv_id,ts_ms,visitor_id,amount_cents,kind CSV")
      ->required();
  att->add_option("--model", attr.model, "last_click or first_click")->capture_default_str();
  att->add_option("--window", attr.window, "lookback, both ends inclusive: 30d, 12h, 90m or ms")
      ->capture_default_str();
  att->add_option("--out", attr.out, "result CSV: referrer_id,conversions,revenue_cents")
      ->required();
  att->add_option("--program", attr.program, "only clicks of this program (default: any)");
  att->callback([&] {
    if (attr.nodes.empty() && attr.data_dir.empty()) {
      throw CLI::RequiredError("--data-dir or --node");
    }
    rc = attr.nodes.empty() ? attribute(attr) : attribute_remote(attr, remote.key);
  });

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
