#pragma once

// Bulk import of recorded clicks and conversions from CSV files (the attribution-bench formats)
// into a data directory, for `earnctl import`. Clicks go through the same writer as the server's:
// an ingest Pipeline with a StoreSink, so the unique flag and velocity reason are set by the same
// code; unknown programs, links and referrers are created through the Catalog.

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "earnd/common/click_id.h"
#include "earnd/common/hash.h"

namespace earnd::store {
class Store;
}

namespace earnd::links {
class Catalog;
}

namespace earnd::ingest {
class ClickSink;

// The meta secret (store key "s/visitor_secret") that keys import_visitor_hash. It is the
// server's visitor secret too when its config leaves clicks.visitor_secret empty.
inline constexpr std::string_view kVisitorSecretName = "visitor_secret";

// Docs of imported conversions are kept under this prefix followed by "{program}/{conv_id}".
inline constexpr std::string_view kImportedConversionPrefix = "ic/";

// A file that cannot be read, a malformed row (the message names the file and line), a program
// that cannot be created, or a storage failure. An import runs once and its failure ends the
// command, so like startup it reports by exception.
class ImportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ImportOptions {
  std::string program = "default";  // created when missing (placeholder destination, USD)
  std::uint32_t max_batch = 16'384;
  std::uint32_t queue_capacity = 65'536;
  // As the server's clicks.* settings; the defaults are the server's defaults.
  std::uint32_t velocity_limit = 0;
  std::uint32_t velocity_window_ms = 60'000;
  std::uint32_t dedupe_capacity = 1'000'000;
  // As clicks.shard_count: an imported click's shard byte is its visitor hash modulo this, as
  // the redirect path makes it, so a cluster routes it to the worker holding that shard.
  std::uint32_t shard_count = kDefaultShardCount;
};

struct ClickImportStats {
  std::uint64_t clicks = 0;
  std::uint64_t bots = 0;
  std::uint64_t unique = 0;      // clicks the writer flagged unique
  std::uint64_t velocity = 0;    // clicks the writer reclassified by the velocity rule
  std::uint64_t duplicates = 0;  // admin import: rows skipped, their click stored already (not
                                 // in clicks)
  std::uint64_t programs_created = 0;
  std::uint64_t referrers_created = 0;
  std::uint64_t links_created = 0;
  double seconds = 0;
};

struct ConversionImportStats {
  std::uint64_t conversions = 0;
  std::uint64_t sales = 0;
  std::uint64_t programs_created = 0;
  double seconds = 0;
};

// One row of a conversions CSV. The views are valid during the callback only.
struct ConversionRow {
  std::string_view conv_id;
  std::uint64_t ts_ms = 0;
  std::string_view visitor_id;
  std::uint64_t amount_cents = 0;
  std::string_view kind;   // "sale" or "signup"
  std::uint64_t line = 0;  // 1-based line number in the file
};

// The visitor hash of an imported visitor id: hasher.hash("v", visitor_id) over the id's text as
// written in the CSV, with the hasher keyed by the kVisitorSecretName secret. Import and
// `earnctl attribute` both use this, so conversions find the clicks of their visitor. Thread-safe.
std::uint64_t import_visitor_hash(const KeyedHasher& hasher, std::string_view visitor_id) noexcept;

// The click id of an imported click: ts_ms in the top 48 bits, shard visitor_hash % shard_count,
// a zero byte, then the CSV's 64-bit click id big-endian. So the clicks of one visitor in one
// millisecond sort in the CSV's click id order, and the id is deterministic: re-importing a file
// writes the same keys. Requires: ts_ms < 2^48.
ClickId import_click_id(std::uint64_t ts_ms,
                        std::uint64_t visitor_hash,
                        std::uint64_t source_id,
                        std::uint32_t shard_count = kDefaultShardCount) noexcept;

// Imports a clicks CSV (header click_id,ts_ms,link_code,referrer_id,visitor_id,is_bot; click_id
// up to 16 hex digits, is_bot 0 or 1). The whole file is checked first, then unknown link codes
// are created in one catalog batch (the referrer_id column becomes the external_id), then every
// row becomes a ClickRecord (reason kBotUa for bots, kHuman otherwise) handed to a one-lane
// Pipeline in async durability with the store in bulk-load mode, and the store is flushed at
// the end. A code that exists already keeps its program and referrer; clicks on a disabled link
// are imported all the same (they happened). Into a store that holds clicks already, rows it
// has (same time, visitor and CSV click id, or the same id) are skipped and counted in
// `duplicates`, so importing a file again changes nothing; a fresh store is not checked (see
// the LIMIT in importer.cc). Blocks; uses one extra thread (the writer). Throws ImportError; a malformed file writes
// nothing.
ClickImportStats import_clicks(store::Store& store,
                               const std::string& path,
                               const ImportOptions& options = {});

// Checks every row of a clicks CSV file as the import does, without storing anything (for
// `earnctl import clicks --node`, so that a bad file is refused before any part is sent).
// Returns the number of rows; throws ImportError naming the line.
std::uint64_t check_clicks_csv(const std::string& path);

// Imports clicks CSV text held in memory (the same format and checks, header included): the
// admin API's POST /v1/import/clicks, which earnctl sends a file to in parts. Unknown links are
// created in `catalog` (in scale-out mode its records reach every node), and the clicks go
// through a private one-lane Pipeline (unique flags and velocity over this text only) to `sink`,
// the server's own (in scale-out mode the spool, so they reach the stream and every worker),
// and are synced before it returns. `name` names the text in errors. Stricter than the file
// import: a code that exists must belong to `options.program` and to the row's referrer, and a
// row whose click is in `store` already (imported before, or twice in the text) is skipped and
// counted in `duplicates`, so importing a part again changes nothing. Throws ImportError; a
// malformed text writes nothing, not even the program.
ClickImportStats import_clicks_text(std::string_view text,
                                    const std::string& name,
                                    links::Catalog& catalog,
                                    const KeyedHasher& hasher,
                                    ClickSink& sink,
                                    const store::Store& store,
                                    const ImportOptions& options = {});

// Imports a conversions CSV (header conv_id,ts_ms,visitor_id,amount_cents,kind) as documents
// "ic/{program}/{conv_id}" in the docs family, each a JSON object {conv_id, ts_ms, visitor_hash,
// amount_cents, kind}: conversions kept to be attributed later, not yet attributed or rewarded.
// Re-importing overwrites the same documents. Blocks; throws ImportError.
ConversionImportStats import_conversions(store::Store& store,
                                         const std::string& path,
                                         const ImportOptions& options = {});

// Reads a conversions CSV and calls fn for each row in file order. conv_id must match
// [A-Za-z0-9_-]{1,64}, kind must be sale or signup. Throws ImportError on an unreadable file or
// a malformed row (rows before it have been passed to fn).
void read_conversions_csv(const std::string& path,
                          const std::function<void(const ConversionRow&)>& fn);

// The same over text held in memory (header included); `name` names it in errors.
void read_conversions_text(std::string_view text,
                           const std::string& name,
                           const std::function<void(const ConversionRow&)>& fn);

}  // namespace earnd::ingest
