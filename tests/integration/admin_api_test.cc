// The admin listener over real HTTP: programs, referrers and links, and its key check.

#include <algorithm>
#include <string>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "server_fixture.h"

namespace earnd::integration {
namespace {

namespace json = boost::json;

class AdminApiTest : public EarndTest {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(start_server()); }

  static std::string program_body(std::string_view id, std::string_view destination) {
    return json::serialize(json::object{
        {"id", id},
        {"currency", "USD"},
        {"destination", destination},
        {"allowed_hosts", json::array{"shop.example.com"}},
    });
  }
};

TEST_F(AdminApiTest, CreatesProgramAndShowsItsSecretsOnce) {
  HttpResponse r = admin("POST", "/v1/programs",
                         program_body("acme", "https://shop.example.com/welcome?src=ref"));

  ASSERT_EQ(r.status, 201) << r.error << r.body;
  EXPECT_EQ(r.header("Content-Type").value_or(""), "application/json");
  json::value v = parse_json(r);
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.at("id"), "acme");
  for (const char* key : {"program_key", "publishable_key", "webhook_secret"}) {
    ASSERT_TRUE(v.as_object().contains(key)) << key << " missing in " << r.body;
    ASSERT_TRUE(v.at(key).is_string()) << key;
    EXPECT_FALSE(v.at(key).as_string().empty()) << key;
  }
  EXPECT_TRUE(v.at("webhook_secret").as_string().starts_with("whsec_"));
}

TEST_F(AdminApiTest, RefusesJavascriptDestinationWithJsonError) {
  HttpResponse r = admin("POST", "/v1/programs", program_body("evil", "javascript:alert(1)"));

  ASSERT_EQ(r.status, 400) << r.error << r.body;
  json::value v = parse_json(r);
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.at("error").at("code"), "invalid_destination");
  EXPECT_TRUE(v.at("error").at("message").is_string());

  // Nothing was created.
  EXPECT_EQ(admin("GET", "/v1/programs/evil").status, 404);
}

TEST_F(AdminApiTest, EnrolsReferrerWithCodeAndUrl) {
  create_program();

  HttpResponse r = admin("POST", "/v1/programs/acme/referrers",
                         R"({"external_id": "u_17", "name": "Ana", "code": "ana"})");

  ASSERT_EQ(r.status, 201) << r.error << r.body;
  json::value v = parse_json(r);
  ASSERT_TRUE(v.is_object());
  EXPECT_TRUE(v.at("id").is_string());
  EXPECT_FALSE(v.at("id").as_string().empty());
  EXPECT_EQ(v.at("code"), "ana");
  std::string expected_url = "http://" + public_endpoint().to_string() + "/r/ana";
  EXPECT_EQ(v.at("url"), expected_url.c_str());
}

TEST_F(AdminApiTest, RefusesControlCharactersInAReferrersExternalId) {
  create_program();
  for (const char* id : {R"(u\u0000)", R"(u\n1)", R"(\u007f)"}) {
    HttpResponse r = admin("POST", "/v1/programs/acme/referrers",
                           std::string(R"({"external_id": ")") + id + R"(", "name": "Ana"})");
    EXPECT_EQ(r.status, 400) << id << ": " << r.body;
    EXPECT_EQ(parse_json(r).at("error").at("code"), "invalid_field") << r.body;
  }
}

TEST_F(AdminApiTest, RejectsMissingOrWrongAdminKey) {
  const std::string body = program_body("acme", std::string(kDestination));
  for (std::string_view key : {std::string_view(), std::string_view("wrong-key-0123456789abc")}) {
    HttpResponse r = admin("POST", "/v1/programs", body, key);
    ASSERT_EQ(r.status, 401) << "key '" << key << "': " << r.error << r.body;
    EXPECT_EQ(parse_json(r).at("error").at("code"), "unauthorized");
    EXPECT_EQ(r.header("WWW-Authenticate").value_or(""), "Bearer");
  }
  EXPECT_EQ(admin("GET", "/metrics", {}, "").status, 401);

  // A scheme other than Bearer with the right key is refused as well.
  HttpResponse basic = fetch(admin_endpoint(), "GET", "/v1/programs/acme",
                             {{"Authorization", "Basic " + std::string(kAdminKey)}});
  EXPECT_EQ(basic.status, 401);

  // None of the refused calls created the program.
  EXPECT_EQ(admin("GET", "/v1/programs/acme").status, 404);
}

TEST_F(AdminApiTest, ShowsProgramWithoutSecrets) {
  HttpResponse created = admin("POST", "/v1/programs", program_body("acme", kDestination));
  ASSERT_EQ(created.status, 201) << created.body;
  json::value secrets = parse_json(created);

  HttpResponse r = admin("GET", "/v1/programs/acme");

  ASSERT_EQ(r.status, 200) << r.error << r.body;
  json::value v = parse_json(r);
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.at("id"), "acme");
  EXPECT_EQ(v.at("currency"), "USD");
  EXPECT_EQ(v.at("destination"), json::string(kDestination));
  EXPECT_FALSE(v.as_object().contains("program_key"));
  EXPECT_FALSE(v.as_object().contains("webhook_secret"));
  EXPECT_FALSE(v.as_object().contains("program_key_sha256"));
  for (const char* key : {"program_key", "webhook_secret"}) {
    std::string secret(secrets.at(key).as_string());
    EXPECT_EQ(r.body.find(secret), std::string::npos) << key << " leaked: " << r.body;
  }
}

TEST_F(AdminApiTest, DisabledLinkAnswersNotFound) {
  create_program();
  enrol("u_17", "ana");
  HttpResponse before = visit("/r/ana");
  ASSERT_EQ(before.status, 302) << before.error << before.body;

  HttpResponse patched = admin("PATCH", "/v1/links/ana", R"({"disabled": true})");
  ASSERT_EQ(patched.status, 200) << patched.error << patched.body;
  EXPECT_EQ(parse_json(patched).at("disabled"), true);

  HttpResponse after = visit("/r/ana");
  EXPECT_EQ(after.status, 404) << after.body;
  EXPECT_FALSE(after.header("Location").has_value());
  EXPECT_FALSE(after.header("Set-Cookie").has_value());
  EXPECT_EQ(visit("/r/ANA").status, 404);

  // Enabling it again restores the redirect.
  ASSERT_EQ(admin("PATCH", "/v1/links/ana", R"({"disabled": false})").status, 200);
  EXPECT_EQ(visit("/r/ana").status, 302);
}

// POST /v1/import/clicks: a part of an attribution-bench clicks CSV stored by the running server
// (what `earnctl import clicks --node` sends), with the links and referrers it names created.
TEST_F(AdminApiTest, ImportsClicksCsvThroughTheAdminApi) {
  const std::string header = "click_id,ts_ms,link_code,referrer_id,visitor_id,is_bot\n";
  HttpResponse r = admin("POST", "/v1/import/clicks?program=imp",
                         header +
                             "a1,1704067200000,rabc123,17,900,0\n"
                             "a2,1704067200500,rabc123,17,901,1\n"
                             "a3,1704067201000,rxyz789,18,900,0\n");
  ASSERT_EQ(r.status, 200) << r.error << r.body;
  json::value v = parse_json(r);
  EXPECT_EQ(v.at("clicks"), 3);
  EXPECT_EQ(v.at("bots"), 1);
  EXPECT_EQ(v.at("links_created"), 2);
  EXPECT_EQ(v.at("referrers_created"), 2);
  EXPECT_EQ(v.at("programs_created"), 1);
  HttpResponse links = admin("GET", "/v1/links?program=imp");
  ASSERT_EQ(links.status, 200) << links.body;
  EXPECT_NE(links.body.find("rxyz789"), std::string::npos) << links.body;
  EXPECT_NE(links.body.find("rabc123"), std::string::npos) << links.body;

  auto rows = [&] {
    HttpResponse e = admin("GET", "/v1/clicks/export?program=imp");
    EXPECT_EQ(e.status, 200) << e.body;
    return std::count(e.body.begin(), e.body.end(), '\n') - 1;  // minus the header
  };
  EXPECT_EQ(rows(), 3);

  // A malformed row: 400 naming the line, and nothing of that part is stored.
  r = admin("POST", "/v1/import/clicks?program=imp",
            header + "b1,1704067300000,rabc123,17,902,0\nb2,notatime,rabc123,17,903,0\n");
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(parse_json(r).at("error").at("code"), "invalid_import");
  EXPECT_NE(r.body.find("body:3"), std::string::npos) << r.body;
  EXPECT_EQ(rows(), 3);

  // The same part again (and a row twice in one part): skipped as stored already, so the
  // link's click count in the report stays that of the stored clicks.
  r = admin("POST", "/v1/import/clicks?program=imp",
            header +
                "a1,1704067200000,rabc123,17,900,0\n"
                "a3,1704067201000,rxyz789,18,900,0\n"
                "c1,1704067202000,rxyz789,18,904,0\n"
                "c1,1704067202000,rxyz789,18,904,0\n");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse_json(r).at("clicks"), 1) << r.body;
  EXPECT_EQ(parse_json(r).at("duplicates"), 3) << r.body;
  EXPECT_EQ(rows(), 4);
  HttpResponse report =
      admin("GET", "/v1/reports/referrers?program=imp&from=2024-01-01&to=2024-01-02");
  ASSERT_EQ(report.status, 200) << report.body;
  std::int64_t reported = 0;
  json::value report_json = parse_json(report);
  for (const auto& row : report_json.at("rows").as_array()) {
    reported += row.at("clicks").to_number<std::int64_t>();
  }
  EXPECT_EQ(reported, 4) << report.body;

  // A code of another program, or another referrer's code: refused, naming the line, and a
  // refused import creates nothing, not even its program.
  r = admin("POST", "/v1/import/clicks?program=other",
            header + "d1,1704067300000,rabc123,17,905,0\n");
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("belongs to program imp"), std::string::npos) << r.body;
  EXPECT_EQ(admin("GET", "/v1/programs/other").status, 404);
  r = admin("POST", "/v1/import/clicks?program=imp",
            header + "d2,1704067300000,rabc123,99,905,0\n");
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("belongs to referrer 17"), std::string::npos) << r.body;
  r = admin("POST", "/v1/import/clicks?program=%FF%FE",
            header + "d3,1704067300000,rnew123,5,1,0\n");
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(parse_json(r).at("error").at("code"), "invalid_field");
  EXPECT_EQ(rows(), 4);

  // The scatter half of a cluster query exists only in scale-out mode.
  r = admin("POST", "/v1/cluster/attribute", "conv_id,ts_ms,visitor_id,amount_cents,kind\n");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(parse_json(r).at("error").at("code"), "cluster_off");
}

}  // namespace
}  // namespace earnd::integration
