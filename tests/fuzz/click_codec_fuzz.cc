// Fuzzes the click record codec and the click id text: any bytes decode to a record or to
// kCorruptRecord, never crash; a decoded record encodes and decodes to itself; a parsed id
// prints as 26 lower-case characters that parse to the same id.

#include <cstdint>
#include <string>
#include <string_view>

#include "earnd/common/click.h"
#include "earnd/common/click_id.h"
#include "fuzz_check.h"

using namespace earnd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  if (auto id = ClickId::parse(in)) {
    std::string text = id->to_string();
    EARND_FUZZ_CHECK(text.size() == 26);
    auto again = ClickId::parse(text);
    EARND_FUZZ_CHECK(again && *again == *id);
  }
  if (size < kClickIdBytes) {
    return 0;
  }
  auto id = ClickId::from_key(in.substr(0, kClickIdBytes));
  if (!id) {
    return 0;
  }
  auto c = decode_click(*id, in.substr(kClickIdBytes));
  if (!c) {
    return 0;
  }
  std::string encoded;
  encode_click(*c, encoded);
  auto back = decode_click(*id, encoded);
  EARND_FUZZ_CHECK(back);
  EARND_FUZZ_CHECK(back->ts_ms == c->ts_ms && back->visitor_hash == c->visitor_hash);
  EARND_FUZZ_CHECK(back->program == c->program && back->referrer_id == c->referrer_id);
  EARND_FUZZ_CHECK(back->code == c->code && back->referer_host == c->referer_host);
  EARND_FUZZ_CHECK(back->unique == c->unique && back->reason == c->reason);
  std::string csv;
  append_click_csv(*c, csv);
  EARND_FUZZ_CHECK(!csv.empty() && csv.back() == '\n');
  return 0;
}
