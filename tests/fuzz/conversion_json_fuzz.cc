// Fuzzes conversion intake: any body the conversion route would accept as JSON goes through
// validation, matching, rewards and the store write. Every answer must be one of the documented
// statuses with a JSON body; a 400 carries an error code. The store lives in a scratch directory
// for the whole run.
//
// LIMIT: accepted conversions stay in the scratch store, so a very long run slows down as the
// store grows; restart the fuzzer with its corpus to reset it.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "earnd/attribution/conversions.h"
#include "earnd/links/catalog.h"
#include "earnd/rewards/ledger.h"
#include "earnd/store/store.h"
#include "fuzz_check.h"

using namespace earnd;

namespace {

struct World {
  std::unique_ptr<store::Store> store;
  std::unique_ptr<links::Catalog> catalog;
  std::unique_ptr<rewards::Ledger> ledger;
  std::unique_ptr<attribution::ConversionService> service;

  World() {
    store = store::Store::open({.data_dir = (fuzz::scratch_dir() / "conv").string()});
    catalog = std::make_unique<links::Catalog>(*store, "http://127.0.0.1:8080");
    auto program = boost::json::parse(R"({"id":"acme","name":"Acme","currency":"USD",
      "destination":"https://shop.example.com/","allowed_hosts":["shop.example.com"],
      "attribution":{"model":"last_click","window_days":30,"cookie_days":30,"dedupe_minutes":60},
      "rewards":[{"event":"signup","referrer":{"fixed_minor":500}},
                 {"event":"sale","referrer":{"percent":20,"max_minor":10000}}],"hold_days":0})");
    EARND_FUZZ_CHECK(catalog->create_program(program).status == 201);
    auto referrer = boost::json::parse(R"({"external_id":"u_1","name":"Ana","code":"ana"})");
    EARND_FUZZ_CHECK(catalog->create_referrer("acme", referrer).status == 201);
    ledger = std::make_unique<rewards::Ledger>(*store, *catalog);
    service = std::make_unique<attribution::ConversionService>(
        *store, *catalog, *ledger, nullptr, attribution::ConversionOptions{.sync = false});
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  boost::json::parse_options opt;
  opt.max_depth = 16;  // as the conversion route
  boost::system::error_code ec;
  boost::json::value v =
      boost::json::parse(std::string_view(reinterpret_cast<const char*>(data), size), ec, {}, opt);
  if (ec || !v.is_object()) {
    return 0;
  }
  std::vector<attribution::ConversionRequest> batch(1);
  batch[0].program = "acme";
  batch[0].body = std::move(v.as_object());
  auto replies = world.service->process(batch);
  EARND_FUZZ_CHECK(replies.size() == 1);
  unsigned status = replies[0].status;
  EARND_FUZZ_CHECK(status == 200 || status == 201 || status == 400 || status == 403 ||
                   status == 404 || status == 409 || status == 503);
  boost::json::value body = boost::json::parse(replies[0].body, ec);
  EARND_FUZZ_CHECK(!ec && body.is_object());
  if (status >= 400) {
    EARND_FUZZ_CHECK(body.as_object().contains("error"));
  }
  return 0;
}
