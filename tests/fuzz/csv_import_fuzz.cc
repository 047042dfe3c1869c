// Fuzzes the CSV importers: the input is written as a clicks file and as a conversions file
// and imported into a scratch store. A malformed file must end in ImportError (naming a line),
// never a crash, and must write nothing. After each input the store's catalog is loaded again,
// as the server's next start would: an import must never store a record that cannot be read
// back (an earlier version stored a non-UTF-8 referrer id that made the next load throw).

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "earnd/ingest/importer.h"
#include "earnd/links/catalog.h"
#include "earnd/store/store.h"
#include "fuzz_check.h"

using namespace earnd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static std::unique_ptr<store::Store> store =
      store::Store::open({.data_dir = (fuzz::scratch_dir() / "import").string()});
  std::string path = (fuzz::scratch_dir() / "input.csv").string();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    (void)ingest::import_clicks(*store, path,
                                {.program = "fz", .max_batch = 64, .queue_capacity = 256});
  } catch (const ingest::ImportError& e) {
    EARND_FUZZ_CHECK(e.what()[0] != '\0');
  }
  { links::Catalog reloaded(*store, ""); }
  try {
    std::size_t rows = 0;
    ingest::read_conversions_csv(path, [&](const ingest::ConversionRow& r) {
      EARND_FUZZ_CHECK(r.line >= 2);
      EARND_FUZZ_CHECK(r.kind == "sale" || r.kind == "signup");
      ++rows;
    });
    (void)rows;
  } catch (const ingest::ImportError& e) {
    EARND_FUZZ_CHECK(e.what()[0] != '\0');
  }
  return 0;
}
