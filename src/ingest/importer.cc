#include "earnd/ingest/importer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include <boost/json.hpp>
#include <boost/unordered/unordered_flat_set.hpp>

#include "earnd/common/click.h"
#include "earnd/common/money.h"
#include "earnd/common/text.h"
#include "earnd/ingest/pipeline.h"
#include "earnd/ingest/sink.h"
#include "earnd/links/catalog.h"
#include "earnd/metrics/metrics.h"
#include "earnd/store/store.h"

namespace json = boost::json;

namespace earnd::ingest {
namespace {

constexpr std::string_view kClicksHeader = "click_id,ts_ms,link_code,referrer_id,visitor_id,is_bot";
constexpr std::string_view kConversionsHeader = "conv_id,ts_ms,visitor_id,amount_cents,kind";
constexpr std::size_t kReadBufferBytes = 4 << 20;
constexpr std::size_t kMaxIdLength = 128;
constexpr std::size_t kDocBatch = 8192;

// Reads a file line by line through one large buffer; a line is valid until the next call.
class LineReader {
 public:
  explicit LineReader(const std::string& path)
      : path_(path), file_(std::fopen(path.c_str(), "rb"), &std::fclose), buf_(kReadBufferBytes) {
    if (!file_) {
      throw ImportError("cannot open " + path + ": " + std::strerror(errno));
    }
  }

  // The next line without its line end (LF or CRLF); false at the end of the file.
  bool next(std::string_view& line) {
    while (true) {
      const char* start = buf_.data() + begin_;
      if (const void* nl = std::memchr(start, '\n', end_ - begin_)) {
        std::size_t n = static_cast<const char*>(nl) - start;
        line = trim_cr({start, n});
        begin_ += n + 1;
        ++line_;
        return true;
      }
      if (eof_) {
        if (begin_ == end_) {
          return false;
        }
        line = trim_cr({start, end_ - begin_});
        begin_ = end_;
        ++line_;
        return true;
      }
      refill();
    }
  }

  std::uint64_t line_number() const noexcept { return line_; }

  [[noreturn]] void fail(std::string_view what) const {
    throw ImportError(path_ + ":" + std::to_string(line_) + ": " + std::string(what));
  }

 private:
  static std::string_view trim_cr(std::string_view s) {
    return !s.empty() && s.back() == '\r' ? s.substr(0, s.size() - 1) : s;
  }

  // Moves the partial line to the front and reads more after it.
  void refill() {
    std::size_t rest = end_ - begin_;
    if (rest == buf_.size()) {
      throw ImportError(path_ + ":" + std::to_string(line_ + 1) + ": line too long");
    }
    std::memmove(buf_.data(), buf_.data() + begin_, rest);
    begin_ = 0;
    end_ = rest;
    std::size_t got = std::fread(buf_.data() + end_, 1, buf_.size() - end_, file_.get());
    if (got == 0) {
      if (std::ferror(file_.get())) {
        throw ImportError("cannot read " + path_ + ": " + std::strerror(errno));
      }
      eof_ = true;
    }
    end_ += got;
  }

  std::string path_;
  std::unique_ptr<std::FILE, decltype(&std::fclose)> file_;
  std::vector<char> buf_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::uint64_t line_ = 0;
  bool eof_ = false;
};

// The same interface over text held in memory (an admin import's request body); name is what
// errors call it.
class TextLines {
 public:
  TextLines(std::string name, std::string_view text) : name_(std::move(name)), rest_(text) {}

  bool next(std::string_view& line) {
    if (rest_.empty()) {
      return false;
    }
    std::size_t nl = rest_.find('\n');
    line = rest_.substr(0, nl);
    rest_.remove_prefix(nl == std::string_view::npos ? rest_.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    ++line_;
    return true;
  }

  std::uint64_t line_number() const noexcept { return line_; }

  [[noreturn]] void fail(std::string_view what) const {
    throw ImportError(name_ + ":" + std::to_string(line_) + ": " + std::string(what));
  }

 private:
  std::string name_;
  std::string_view rest_;
  std::uint64_t line_ = 0;
};

// Splits a line into exactly N comma-separated fields (the formats need no quoting).
template <std::size_t N>
bool split(std::string_view line, std::array<std::string_view, N>& out) {
  for (std::size_t i = 0; i < N; ++i) {
    std::size_t comma = line.find(',');
    if ((comma == std::string_view::npos) != (i == N - 1)) {
      return false;
    }
    out[i] = line.substr(0, comma);
    line.remove_prefix(comma == std::string_view::npos ? line.size() : comma + 1);
  }
  return true;
}

bool parse_u64(std::string_view s, std::uint64_t& out, int base = 10) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size();
}

template <class Reader>
void expect_header(Reader& in, std::string_view header) {
  std::string_view line;
  if (!in.next(line)) {
    in.fail("empty file, expected the header " + std::string(header));
  }
  if (line.starts_with("\xEF\xBB\xBF")) {
    line.remove_prefix(3);
  }
  if (line != header) {
    in.fail("expected the header " + std::string(header));
  }
}

bool valid_id(std::string_view s) {
  return !s.empty() && s.size() <= kMaxIdLength;
}

struct ClickRow {
  std::uint64_t source_id = 0;
  std::uint64_t ts_ms = 0;
  std::string_view code;
  std::string_view referrer;
  std::string_view visitor;
  bool bot = false;
};

// Parses one clicks row; reports a malformed one through in.fail().
template <class Reader>
ClickRow parse_click_row(const Reader& in, std::string_view line) {
  std::array<std::string_view, 6> f;
  if (!split(line, f)) {
    in.fail("expected 6 fields");
  }
  ClickRow r;
  if (f[0].size() > 16 || !parse_u64(f[0], r.source_id, 16)) {
    in.fail("click_id must be up to 16 hex digits");
  }
  if (!parse_u64(f[1], r.ts_ms) || r.ts_ms >= (1ULL << 48)) {
    in.fail("ts_ms must be Unix milliseconds");
  }
  if (!links::is_valid_code(f[2])) {
    in.fail("link_code must match [A-Za-z0-9_-]{3,32}");
  }
  if (!valid_id(f[3]) || !valid_id(f[4])) {
    in.fail("referrer_id and visitor_id must be 1 to 128 bytes");
  }
  // The referrer id becomes the referrer's external_id in a JSON record; text that JSON cannot
  // hold would make the catalog unreadable at the next start (found by the csv_import fuzzer).
  if (!is_printable_utf8(f[3])) {
    in.fail("referrer_id must be UTF-8 text without control characters");
  }
  if (f[5] != "0" && f[5] != "1") {
    in.fail("is_bot must be 0 or 1");
  }
  r.code = f[2];
  r.referrer = f[3];
  r.visitor = f[4];
  r.bot = f[5] == "1";
  return r;
}

bool valid_conv_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Makes the program when it does not exist; true when it was created.
bool ensure_program(links::Catalog& catalog, const std::string& id) {
  if (catalog.get_program(id).status == 200) {
    return false;
  }
  json::object body;
  body["id"] = id;
  body["name"] = id;
  body["currency"] = "USD";
  body["destination"] = "https://example.com/";
  body["allowed_hosts"] = json::array{"example.com"};
  links::AdminReply reply = catalog.create_program(body);
  if (reply.status != 201) {
    throw ImportError("cannot create program " + id + ": " + json::serialize(reply.body));
  }
  return true;
}

// Forwards to the store's sink and counts what the writer decided, to report it and to notice
// a failed write (the pipeline drops a batch that fails; an import must not).
class CountingSink final : public ClickSink {
 public:
  explicit CountingSink(ClickSink& inner) : inner_(inner) {}

  ErrorCode write(std::span<const ClickRecord> clicks, bool sync) override {
    ErrorCode ec = inner_.write(clicks, sync);
    if (ec) {
      failed += clicks.size();
      first_error = first_error ? first_error : ec;
      return ec;
    }
    stored += clicks.size();
    for (const ClickRecord& c : clicks) {
      unique += c.unique ? 1 : 0;
      velocity += c.reason == ClickReason::kVelocity ? 1 : 0;
    }
    return ec;
  }

  ErrorCode sync() override { return inner_.sync(); }

  std::size_t last_write_bytes() const noexcept override { return inner_.last_write_bytes(); }

  // Written by the writer thread only; read after Pipeline::stop() has joined it.
  std::uint64_t stored = 0;
  std::uint64_t failed = 0;
  std::uint64_t unique = 0;
  std::uint64_t velocity = 0;
  ErrorCode first_error;

 private:
  ClickSink& inner_;
};

// Pass 1: checks every row and lists the link codes the catalog does not know (each once, with
// the referrer of its first row). on_known(row, link, reader) is called for each row whose code
// the catalog has, and may refuse it through reader.fail().
template <class Reader, class OnKnown>
std::vector<links::LinkSpec> missing_links(Reader& in,
                                           const links::Snapshot& snapshot,
                                           const OnKnown& on_known) {
  expect_header(in, kClicksHeader);
  boost::unordered_flat_set<std::string> seen;
  std::vector<links::LinkSpec> missing;
  std::string key;
  std::string_view line;
  while (in.next(line)) {
    ClickRow r = parse_click_row(in, line);
    if (const links::LinkView* link = snapshot.find(r.code)) {
      on_known(r, *link, in);
      continue;
    }
    key.assign(r.code);
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (seen.insert(key).second) {
      missing.push_back({std::string(r.code), std::string(r.referrer)});
    }
  }
  return missing;
}

// Creates the listed links (and their referrers) in one catalog batch.
void create_links(links::Catalog& catalog,
                  const std::string& program,
                  const std::vector<links::LinkSpec>& missing,
                  ClickImportStats& stats) {
  if (missing.empty()) {
    return;
  }
  auto created = catalog.ensure_links(program, missing);
  if (!created) {
    throw ImportError("cannot create links: " + created.error().message());
  }
  stats.referrers_created = created->referrers_created;
  stats.links_created = created->links_created;
}

// The server's writer settings for a bulk load: async durability (the WAL is off anyway), big
// batches, and no per-click callbacks.
PipelineOptions pipeline_options(const ImportOptions& o) {
  PipelineOptions p;
  p.sync_each_batch = false;
  p.max_batch = o.max_batch;
  p.queue_capacity = o.queue_capacity;
  p.flush_interval_ms = 1000;
  p.velocity_limit = o.velocity_limit;
  p.velocity_window_ms = o.velocity_window_ms;
  p.dedupe_capacity = o.dedupe_capacity;
  return p;
}

// Hands a click to the writer, waiting while the lane's queue is full; never drops it.
void submit(Pipeline& pipeline, const PendingClick& click) {
  int tries = 0;
  while (!pipeline.try_submit(0, click)) {
    if (++tries < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
}

// Pass 2: every row through the pipeline, as the redirect path builds its click.
// keep: when set, a click it refuses is not written (counted in stats.duplicates).
template <class Reader>
void write_clicks(Reader in,
                  const links::Snapshot& snapshot,
                  const KeyedHasher& hasher,
                  Pipeline& pipeline,
                  ClickImportStats& stats,
                  std::uint32_t shard_count,
                  const std::function<bool(const ClickRecord&)>& keep = {}) {
  expect_header(in, kClicksHeader);
  PendingClick p;
  std::string_view line;
  while (in.next(line)) {
    ClickRow r = parse_click_row(in, line);
    const links::LinkView* link = snapshot.find(r.code);
    if (link == nullptr) {
      in.fail("link_code is unknown after creating the missing links (the file changed?)");
    }
    ClickRecord& c = p.record;
    c.ts_ms = r.ts_ms;
    c.visitor_hash = import_visitor_hash(hasher, r.visitor);
    c.id = import_click_id(r.ts_ms, c.visitor_hash, r.source_id, shard_count);
    c.program = link->program->id;
    c.referrer_id = link->referrer_id;
    c.code = link->code;
    c.reason = r.bot ? ClickReason::kBotUa : ClickReason::kHuman;
    c.unique = true;  // the writer decides
    p.dedupe_ms = link->program->dedupe_ms;
    if (keep && !keep(c)) {
      ++stats.duplicates;
      continue;
    }
    submit(pipeline, p);
    ++stats.clicks;
    stats.bots += r.bot ? 1 : 0;
  }
}

}  // namespace

std::uint64_t import_visitor_hash(const KeyedHasher& hasher, std::string_view visitor_id) noexcept {
  return hasher.hash("v", visitor_id);
}

ClickId import_click_id(std::uint64_t ts_ms,
                        std::uint64_t visitor_hash,
                        std::uint64_t source_id,
                        std::uint32_t shard_count) noexcept {
  ClickId id;
  for (int i = 0; i < 6; ++i) {
    id.bytes[i] = static_cast<std::uint8_t>(ts_ms >> (8 * (5 - i)));
  }
  id.bytes[6] = static_cast<std::uint8_t>(visitor_hash % std::max<std::uint32_t>(shard_count, 1));
  id.bytes[7] = 0;
  for (int i = 0; i < 8; ++i) {
    id.bytes[8 + i] = static_cast<std::uint8_t>(source_id >> (8 * (7 - i)));
  }
  return id;
}

// Imported ids are derived from the row (time, visitor, CSV click id), so a row imported
// again, or twice in one text, names a stored click: the returned check is false for it, and the
// row is skipped, not written over (which would count it again in the reports, move it to
// another program, or leave the visitor index's entry of the old row beside the new one). A row
// is known by its time, visitor and CSV click id, and by its id: not by the shard byte alone,
// which follows clicks.shard_count, so a part sent again after that setting changed is still
// skipped.
std::function<bool(const ClickRecord&)> unstored_rows(const store::Store& store) {
  auto seen = std::make_shared<boost::unordered_flat_set<std::string>>();
  return [&store, seen](const ClickRecord& c) {
    std::string key(c.id.key());
    key.erase(6, 1);  // the shard byte
    if (!seen->insert(std::move(key)).second) {
      return false;
    }
    auto have = store.get_click(c.id);
    if (have && *have) {
      return false;
    }
    bool stored = false;
    auto ec = store.clicks_at(c.visitor_hash, c.ts_ms, [&](const ClickRecord& r) {
      stored = std::equal(r.id.bytes.begin() + 7, r.id.bytes.end(), c.id.bytes.begin() + 7);
      return !stored;
    });
    return !have || ec || !stored;  // a read error: written (the writer reports a failure)
  };
}

ClickImportStats import_clicks(store::Store& store,
                               const std::string& path,
                               const ImportOptions& options) {
  auto start = std::chrono::steady_clock::now();
  ClickImportStats stats;
  links::Catalog catalog(store, "");
  KeyedHasher hasher(store.load_or_create_secret(kVisitorSecretName));
  stats.programs_created = ensure_program(catalog, options.program) ? 1 : 0;
  {
    LineReader in(path);
    create_links(catalog, options.program, missing_links(in, *catalog.snapshot(), [](auto&&...) {}),
                 stats);
  }

  // Into a store that holds clicks already, rows it has are skipped, as the admin import does.
  // LIMIT: a fresh store is not checked (a check per row would slow a bulk load by half): two
  // rows of one file with the same time and CSV click id are both written, the second over the
  // first when their visitors share a shard byte.
  bool had_clicks = false;
  (void)store.scan_clicks(0, UINT64_MAX, [&](const ClickRecord&) {
    had_clicks = true;
    return false;
  });

  // The server's writer, with the WAL off: the flush below makes the import durable.
  metrics::Metrics metrics;
  StoreSink store_sink(store);
  CountingSink sink(store_sink);
  store.set_bulk_load(true);
  {
    Pipeline pipeline(pipeline_options(options), sink, metrics, 1);
    pipeline.set_waker(0, [] {});
    pipeline.start();
    try {
      write_clicks(LineReader(path), *catalog.snapshot(), hasher, pipeline, stats,
                   options.shard_count, had_clicks ? unstored_rows(store) : nullptr);
    } catch (...) {
      pipeline.stop();
      store.set_bulk_load(false);
      (void)store.flush();
      throw;
    }
    pipeline.stop();
  }
  store.set_bulk_load(false);
  ErrorCode flushed = store.flush();

  if (sink.failed != 0 || sink.stored != stats.clicks) {
    throw ImportError("storing clicks failed for " + std::to_string(stats.clicks - sink.stored) +
                      " of " + std::to_string(stats.clicks) + ": " + sink.first_error.message());
  }
  if (flushed) {
    throw ImportError("flushing the store failed: " + flushed.message());
  }
  stats.unique = sink.unique;
  stats.velocity = sink.velocity;
  stats.seconds = seconds_since(start);
  return stats;
}

std::uint64_t check_clicks_csv(const std::string& path) {
  LineReader in(path);
  expect_header(in, kClicksHeader);
  std::uint64_t rows = 0;
  std::string_view line;
  while (in.next(line)) {
    (void)parse_click_row(in, line);
    ++rows;
  }
  return rows;
}

ClickImportStats import_clicks_text(std::string_view text,
                                    const std::string& name,
                                    links::Catalog& catalog,
                                    const KeyedHasher& hasher,
                                    ClickSink& sink,
                                    const store::Store& store,
                                    const ImportOptions& options) {
  auto start = std::chrono::steady_clock::now();
  ClickImportStats stats;
  // Every row first: a malformed text creates nothing, not even the program. A code that
  // exists already must be this program's and its referrer's (a server's links are in use: an
  // import never moves a click to another program or referrer without saying so).
  TextLines check(name, text);
  auto missing =
      missing_links(check, *catalog.snapshot(),
                    [&](const ClickRow& r, const links::LinkView& link, const TextLines& in) {
                      if (link.program->id != options.program) {
                        in.fail("link_code " + std::string(r.code) + " belongs to program " +
                                link.program->id + ", not " + options.program);
                      }
                      auto owner = catalog.referrer_external_id(link.referrer_id);
                      if (owner && *owner != r.referrer) {
                        in.fail("link_code " + std::string(r.code) + " belongs to referrer " +
                                *owner + ", not " + std::string(r.referrer));
                      }
                    });
  stats.programs_created = ensure_program(catalog, options.program) ? 1 : 0;
  create_links(catalog, options.program, missing, stats);
  metrics::Metrics metrics;
  CountingSink counting(sink);
  auto keep = unstored_rows(store);
  {
    Pipeline pipeline(pipeline_options(options), counting, metrics, 1);
    pipeline.set_waker(0, [] {});
    pipeline.start();
    try {
      write_clicks(TextLines(name, text), *catalog.snapshot(), hasher, pipeline, stats,
                   options.shard_count, keep);
    } catch (...) {
      pipeline.stop();
      throw;
    }
    pipeline.stop();  // writes what was submitted, then syncs
  }
  std::uint64_t written = stats.clicks;  // skipped rows are not counted in clicks
  if (counting.failed != 0 || counting.stored != written) {
    throw ImportError("storing clicks failed for " + std::to_string(written - counting.stored) +
                      " of " + std::to_string(written) + ": " + counting.first_error.message());
  }
  if (ErrorCode ec = counting.sync()) {
    throw ImportError("syncing the imported clicks failed: " + ec.message());
  }
  stats.unique = counting.unique;
  stats.velocity = counting.velocity;
  stats.seconds = seconds_since(start);
  return stats;
}

namespace {

template <class Reader>
void read_conversions(Reader in, const std::function<void(const ConversionRow&)>& fn) {
  expect_header(in, kConversionsHeader);
  std::string_view line;
  std::array<std::string_view, 5> f;
  while (in.next(line)) {
    if (!split(line, f)) {
      in.fail("expected 5 fields");
    }
    ConversionRow r;
    r.line = in.line_number();
    if (!valid_conv_id(f[0])) {
      in.fail("conv_id must match [A-Za-z0-9_-]{1,64}");
    }
    if (!parse_u64(f[1], r.ts_ms) || r.ts_ms >= (1ULL << 48)) {
      in.fail("ts_ms must be Unix milliseconds");
    }
    if (!valid_id(f[2])) {
      in.fail("visitor_id must be 1 to 128 bytes");
    }
    if (!parse_u64(f[3], r.amount_cents) ||
        r.amount_cents > static_cast<std::uint64_t>(kMaxAmountMinor)) {
      in.fail("amount_cents must be an integer from 0 to " + std::to_string(kMaxAmountMinor) +
              " (the most earnd accepts for one conversion)");
    }
    if (f[4] != "sale" && f[4] != "signup") {
      in.fail("kind must be sale or signup");
    }
    r.conv_id = f[0];
    r.visitor_id = f[2];
    r.kind = f[4];
    fn(r);
  }
}

}  // namespace

void read_conversions_csv(const std::string& path,
                          const std::function<void(const ConversionRow&)>& fn) {
  read_conversions(LineReader(path), fn);
}

void read_conversions_text(std::string_view text,
                           const std::string& name,
                           const std::function<void(const ConversionRow&)>& fn) {
  read_conversions(TextLines(name, text), fn);
}

ConversionImportStats import_conversions(store::Store& store,
                                         const std::string& path,
                                         const ImportOptions& options) {
  auto start = std::chrono::steady_clock::now();
  ConversionImportStats stats;
  links::Catalog catalog(store, "");
  KeyedHasher hasher(store.load_or_create_secret(kVisitorSecretName));
  stats.programs_created = ensure_program(catalog, options.program) ? 1 : 0;

  // Read the whole file first, so that a malformed one writes nothing.
  std::string prefix = std::string(kImportedConversionPrefix) + options.program + "/";
  std::vector<std::pair<std::string, std::string>> docs;
  read_conversions_csv(path, [&](const ConversionRow& r) {
    json::object doc;
    doc["conv_id"] = r.conv_id;
    doc["ts_ms"] = r.ts_ms;
    doc["visitor_hash"] = import_visitor_hash(hasher, r.visitor_id);
    doc["amount_cents"] = r.amount_cents;
    doc["kind"] = r.kind;
    docs.emplace_back(prefix + std::string(r.conv_id), json::serialize(doc));
    stats.sales += r.kind == "sale" ? 1 : 0;
  });
  stats.conversions = docs.size();

  std::vector<std::pair<std::string, std::string>> batch;
  for (std::size_t i = 0; i < docs.size(); i += kDocBatch) {
    std::size_t end = std::min(docs.size(), i + kDocBatch);
    batch.assign(std::make_move_iterator(docs.begin() + i),
                 std::make_move_iterator(docs.begin() + end));
    if (auto ec = store.write_docs(batch, false)) {
      throw ImportError("storing conversions failed: " + ec.message());
    }
  }
  if (auto ec = store.flush()) {
    throw ImportError("flushing the store failed: " + ec.message());
  }
  stats.seconds = seconds_since(start);
  return stats;
}

}  // namespace earnd::ingest
