#include "earnd/links/catalog.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "earnd/store/store.h"

namespace earnd::links {
namespace {

namespace json = boost::json;

constexpr std::string_view kBaseUrl = "https://go.example.com";

// A real store in a temporary directory and a catalog over it.
class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "earnd_catalog_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    store_ = store::Store::open({.data_dir = dir_, .block_cache_mb = 8});
    catalog_ = std::make_unique<Catalog>(*store_, std::string(kBaseUrl));
  }

  void TearDown() override {
    catalog_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  static json::object program_body(std::string_view id = "acme") {
    return json::object{{"id", id},
                        {"currency", "USD"},
                        {"allowed_hosts", json::array{"shop.example.com"}},
                        {"destination", "https://shop.example.com/landing"}};
  }

  // Creates the program and returns its one-time program key.
  std::string create_acme() {
    AdminReply r = catalog_->create_program(program_body());
    EXPECT_EQ(r.status, 201u) << json::serialize(r.body);
    return r.status == 201 ? std::string(r.body.at("program_key").as_string()) : "";
  }

  AdminReply create_referrer(std::string_view external_id, std::string_view code = "") {
    json::object body{{"external_id", external_id}, {"name", "Ann"}};
    if (!code.empty()) {
      body["code"] = code;
    }
    return catalog_->create_referrer("acme", body);
  }

  // The "code" of an {"error": {...}} reply, or "" for any other body.
  static std::string error_code(const AdminReply& r) {
    const json::object* body = r.body.if_object();
    const json::value* error = body != nullptr ? body->if_contains("error") : nullptr;
    const json::object* fields = error != nullptr ? error->if_object() : nullptr;
    const json::value* code = fields != nullptr ? fields->if_contains("code") : nullptr;
    return code != nullptr && code->is_string() ? std::string(code->as_string()) : "";
  }

  static std::string id_of(const AdminReply& r) { return std::string(r.body.at("id").as_string()); }

  // The destination a redirect for code would use now, or "" when the code is unknown.
  std::string destination_of(std::string_view code) const {
    const LinkView* link = catalog_->snapshot()->find(code);
    return link == nullptr ? "" : link->effective_destination().normalized;
  }

  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(CatalogTest, CreateProgramRejectsMissingFields) {
  for (const char* field : {"id", "currency", "allowed_hosts", "destination"}) {
    json::object body = program_body();
    body.erase(field);

    AdminReply r = catalog_->create_program(body);

    EXPECT_EQ(r.status, 400u) << field;
    EXPECT_EQ(error_code(r), "missing_field") << field;
  }
  EXPECT_EQ(error_code(catalog_->create_program(json::array{})), "invalid_json");
}

TEST_F(CatalogTest, CreateProgramRejectsBadIdAndCurrency) {
  const std::pair<const char*, const char*> cases[] = {
      {"id", "Acme"},     {"id", "acme_shop"},  {"id", "acme shop"}, {"currency", "usd"},
      {"currency", "US"}, {"currency", "USDX"}, {"currency", "U$D"}};
  for (const auto& [field, value] : cases) {
    json::object body = program_body();
    body[field] = value;

    AdminReply r = catalog_->create_program(body);

    EXPECT_EQ(r.status, 400u) << field << "=" << value;
    EXPECT_EQ(error_code(r), "invalid_field") << field << "=" << value;
  }
}

TEST_F(CatalogTest, CreateProgramRejectsUnsafeOrForeignDestinations) {
  for (const char* url : {"javascript:alert(1)", "https://evil.example.net/landing",
                          "https://shop.example.com.evil.net/", "ftp://shop.example.com/"}) {
    json::object body = program_body();
    body["destination"] = url;

    AdminReply r = catalog_->create_program(body);

    EXPECT_EQ(r.status, 400u) << url;
    EXPECT_EQ(error_code(r), "invalid_destination") << url;
  }
  EXPECT_EQ(catalog_->get_program("acme").status, 404u);
}

TEST_F(CatalogTest, CreateProgramRejectsDuplicateId) {
  create_acme();

  AdminReply r = catalog_->create_program(program_body());

  EXPECT_EQ(r.status, 409u);
  EXPECT_EQ(error_code(r), "program_exists");
}

TEST_F(CatalogTest, ReturnsSecretsOnceAndGetProgramHidesThem) {
  AdminReply created = catalog_->create_program(program_body());
  ASSERT_EQ(created.status, 201u);
  std::string key(created.body.at("program_key").as_string());
  std::string secret(created.body.at("webhook_secret").as_string());
  EXPECT_TRUE(key.starts_with("sk_"));
  EXPECT_TRUE(secret.starts_with("whsec_"));

  AdminReply got = catalog_->get_program("acme");

  ASSERT_EQ(got.status, 200u);
  std::string text = json::serialize(got.body);
  EXPECT_EQ(text.find(key), std::string::npos) << text;
  EXPECT_EQ(text.find(secret), std::string::npos) << text;
  EXPECT_FALSE(got.body.as_object().contains("program_key_sha256"));
  EXPECT_FALSE(got.body.as_object().contains("webhook_secret"));
  EXPECT_EQ(got.body.at("destination"), "https://shop.example.com/landing");
}

TEST_F(CatalogTest, FindsProgramByItsKeyOnly) {
  std::string key = create_acme();
  json::object beta = program_body("beta");
  std::string beta_key(catalog_->create_program(beta).body.at("program_key").as_string());

  EXPECT_EQ(catalog_->program_for_key(key), std::optional<std::string>("acme"));
  EXPECT_EQ(catalog_->program_for_key(beta_key), std::optional<std::string>("beta"));
  EXPECT_EQ(catalog_->program_for_key(key + "x"), std::nullopt);
  EXPECT_EQ(catalog_->program_for_key(""), std::nullopt);
}

TEST_F(CatalogTest, RotatedKeyReplacesTheOldOne) {
  std::string old_key = create_acme();

  AdminReply r = catalog_->rotate_keys("acme");

  ASSERT_EQ(r.status, 200u);
  std::string new_key(r.body.at("program_key").as_string());
  EXPECT_EQ(catalog_->program_for_key(new_key), std::optional<std::string>("acme"));
  EXPECT_EQ(catalog_->program_for_key(old_key), std::nullopt);
}

TEST_F(CatalogTest, CreateReferrerMakesLinkWithGivenCode) {
  create_acme();

  AdminReply r = create_referrer("user-1", "Summer24");

  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  EXPECT_EQ(r.body.at("code"), "Summer24");
  EXPECT_EQ(r.body.at("url"), "https://go.example.com/r/Summer24");
  EXPECT_EQ(r.body.at("external_id"), "user-1");
  for (const char* code : {"Summer24", "summer24", "SUMMER24"}) {
    const LinkView* link = catalog_->snapshot()->find(code);
    ASSERT_NE(link, nullptr) << code;
    EXPECT_EQ(link->code, "Summer24");
    EXPECT_EQ(link->referrer_id, id_of(r));
    EXPECT_EQ(link->program->id, "acme");
    EXPECT_FALSE(link->disabled);
  }
  EXPECT_EQ(catalog_->referrer_external_id(id_of(r)), std::optional<std::string>("user-1"));
}

TEST_F(CatalogTest, CreateReferrerGeneratesCodeWhenAbsent) {
  create_acme();

  AdminReply r = create_referrer("user-1");

  ASSERT_EQ(r.status, 201u) << json::serialize(r.body);
  std::string code(r.body.at("code").as_string());
  EXPECT_TRUE(is_valid_code(code)) << code;
  EXPECT_EQ(code.size(), 8u);
  EXPECT_NE(catalog_->snapshot()->find(code), nullptr);
  EXPECT_EQ(destination_of(code), "https://shop.example.com/landing");
}

TEST_F(CatalogTest, CreateReferrerRejectsDuplicateExternalId) {
  create_acme();
  AdminReply first = create_referrer("user-1", "first");

  AdminReply second = create_referrer("user-1", "second");

  EXPECT_EQ(second.status, 409u);
  EXPECT_EQ(error_code(second), "referrer_exists");
  EXPECT_EQ(second.body.at("id"), first.body.at("id"));
  EXPECT_EQ(catalog_->snapshot()->find("second"), nullptr);
}

TEST_F(CatalogTest, RejectsTakenCodeInAnyCase) {
  create_acme();
  AdminReply first = create_referrer("user-1", "Summer24");

  AdminReply again = create_referrer("user-2", "sUMMER24");
  AdminReply link = catalog_->create_link(json::object{
      {"program", "acme"}, {"referrer_id", first.body.at("id")}, {"code", "SUMMER24"}});

  EXPECT_EQ(again.status, 409u);
  EXPECT_EQ(error_code(again), "code_taken");
  EXPECT_EQ(link.status, 409u);
  EXPECT_EQ(error_code(link), "code_taken");
  EXPECT_EQ(catalog_->snapshot()->find("summer24")->referrer_id, id_of(first));
}

TEST_F(CatalogTest, CreateReferrerRejectsUnknownProgramAndBadCode) {
  EXPECT_EQ(create_referrer("user-1", "Summer24").status, 404u);

  create_acme();
  AdminReply bad = create_referrer("user-1", "a/b");

  EXPECT_EQ(bad.status, 400u);
  EXPECT_EQ(error_code(bad), "invalid_code");
}

TEST_F(CatalogTest, CreateLinkAddsSecondCodeWithOwnDestination) {
  create_acme();
  AdminReply ref = create_referrer("user-1", "first");

  AdminReply link =
      catalog_->create_link(json::object{{"program", "acme"},
                                         {"referrer_id", ref.body.at("id")},
                                         {"code", "Second"},
                                         {"destination", "https://shop.example.com/b"}});

  ASSERT_EQ(link.status, 201u) << json::serialize(link.body);
  EXPECT_EQ(destination_of("SECOND"), "https://shop.example.com/b");
  EXPECT_EQ(destination_of("first"), "https://shop.example.com/landing");
}

TEST_F(CatalogTest, PatchLinkDisabledShowsInSnapshot) {
  create_acme();
  create_referrer("user-1", "Summer24");

  AdminReply r = catalog_->patch_link("SUMMER24", json::object{{"disabled", true}});

  ASSERT_EQ(r.status, 200u) << json::serialize(r.body);
  ASSERT_NE(catalog_->snapshot()->find("summer24"), nullptr);
  EXPECT_TRUE(catalog_->snapshot()->find("summer24")->disabled);
  EXPECT_EQ(catalog_->patch_link("nobody", json::object{{"disabled", true}}).status, 404u);
}

TEST_F(CatalogTest, PatchProgramChangesDestination) {
  create_acme();
  create_referrer("user-1", "Summer24");

  AdminReply r = catalog_->patch_program(
      "acme", json::object{{"destination", "https://shop.example.com/new?x=1"}});

  ASSERT_EQ(r.status, 200u) << json::serialize(r.body);
  EXPECT_EQ(destination_of("summer24"), "https://shop.example.com/new?x=1");
  EXPECT_EQ(catalog_->get_program("acme").body.at("destination"),
            "https://shop.example.com/new?x=1");
  EXPECT_FALSE(r.body.as_object().contains("webhook_secret"));
}

TEST_F(CatalogTest, PatchProgramRejectsCurrencyChangeAndBadDestination) {
  std::string key = create_acme();

  AdminReply currency = catalog_->patch_program("acme", json::object{{"currency", "EUR"}});
  AdminReply dest =
      catalog_->patch_program("acme", json::object{{"destination", "https://evil.example.net/"}});

  EXPECT_EQ(currency.status, 400u);
  EXPECT_EQ(error_code(currency), "immutable_field");
  EXPECT_EQ(dest.status, 400u);
  EXPECT_EQ(error_code(dest), "invalid_destination");
  AdminReply got = catalog_->get_program("acme");
  EXPECT_EQ(got.body.at("currency"), "USD");
  EXPECT_EQ(got.body.at("destination"), "https://shop.example.com/landing");
  EXPECT_EQ(catalog_->program_for_key(key), std::optional<std::string>("acme"));
}

TEST_F(CatalogTest, ReopenedCatalogSeesEverything) {
  std::string key = create_acme();
  AdminReply ref = create_referrer("user-1", "Summer24");
  ASSERT_EQ(catalog_->patch_link("summer24", json::object{{"disabled", true}}).status, 200u);

  // A fresh catalog over a reopened store must load what the first one wrote.
  catalog_.reset();
  store_.reset();
  store_ = store::Store::open({.data_dir = dir_, .block_cache_mb = 8});
  catalog_ = std::make_unique<Catalog>(*store_, std::string(kBaseUrl));

  EXPECT_EQ(catalog_->get_program("acme").status, 200u);
  EXPECT_EQ(catalog_->program_for_key(key), std::optional<std::string>("acme"));
  const LinkView* link = catalog_->snapshot()->find("SUMMER24");
  ASSERT_NE(link, nullptr);
  EXPECT_TRUE(link->disabled);
  EXPECT_EQ(link->effective_destination().normalized, "https://shop.example.com/landing");
  EXPECT_EQ(create_referrer("user-1", "other").status, 409u);
  EXPECT_EQ(create_referrer("user-2", "summer24").status, 409u);
  EXPECT_EQ(catalog_->referrer_external_id(id_of(ref)), std::optional<std::string>("user-1"));
}

TEST_F(CatalogTest, SnapshotReaderRefreshesAfterChange) {
  create_acme();
  SnapshotReader reader(*catalog_);
  EXPECT_EQ(reader.get().find("summer24"), nullptr);
  std::uint64_t before = reader.get().version;

  create_referrer("user-1", "Summer24");

  EXPECT_NE(reader.get().find("summer24"), nullptr);
  EXPECT_GT(reader.get().version, before);
  EXPECT_EQ(reader.get().version, catalog_->version());

  ASSERT_EQ(catalog_->patch_link("summer24", json::object{{"disabled", true}}).status, 200u);
  EXPECT_TRUE(reader.get().find("summer24")->disabled);
}

TEST_F(CatalogTest, ReadersNeverSeeAPartialDestination) {
  create_acme();
  create_referrer("user-1", "Summer24");
  const std::string a = "https://shop.example.com/a?campaign=alpha";
  const std::string b = "https://shop.example.com/bb/path?campaign=bravo#frag";
  ASSERT_EQ(catalog_->patch_link("summer24", json::object{{"destination", a}}).status, 200u);
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::atomic<int> reads{0};

  // Each reader copies what it sees, so a torn or freed string would show as a mismatch.
  auto read_loop = [&] {
    SnapshotReader reader(*catalog_);
    while (!done.load()) {
      const LinkView* link = reader.get().find("summer24");
      std::string seen = link == nullptr ? "" : link->effective_destination().normalized;
      bad += (seen != a && seen != b) ? 1 : 0;
      ++reads;
    }
  };
  std::thread r1(read_loop);
  std::thread r2(read_loop);
  int failed_patches = 0;
  for (int i = 0; i < 1000; ++i) {
    json::object patch{{"destination", i % 2 == 0 ? b : a}};
    failed_patches += catalog_->patch_link("summer24", patch).status != 200 ? 1 : 0;
  }
  done = true;
  r1.join();
  r2.join();

  EXPECT_EQ(failed_patches, 0);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(destination_of("summer24"), a);
}

}  // namespace
}  // namespace earnd::links
