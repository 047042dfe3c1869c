#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "earnd/common/secrets.h"
#include "earnd/webhooks/outbox.h"
#include "hmac_reference.h"

namespace earnd::webhooks {
namespace {

// The example of the Standard Webhooks reference libraries (their sign() tests): secret, id,
// timestamp and body below give exactly this header value.
TEST(SignTest, MatchesTheStandardWebhooksVector) {
  EXPECT_EQ(sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                 1614265330, R"({"test": 2432232314})"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST(SignTest, MatchesAnIndependentHmacForCatalogSecrets) {
  // Catalog secrets are whsec_ + base64 of 24 bytes; other lengths exercise the padding.
  for (std::size_t n : {24, 16, 32, 1, 2}) {
    std::string secret = "whsec_" + random_base64(n);
    std::string body = R"({"type":"click.first","timestamp":"2026-12-01T10:00:00Z","data":{}})";
    EXPECT_EQ(sign(secret, "msg_abc", 1764583200, body),
              testing::reference_signature(secret, "msg_abc", "1764583200", body))
        << secret;
  }
}

TEST(SignTest, UsesASecretWithoutThePrefixAsRawBytes) {
  EXPECT_EQ(sign("plain-key", "msg_1", 5, "{}"),
            "v1," + testing::reference_hmac_base64("plain-key", "msg_1.5.{}"));
}

TEST(SignTest, DiffersWhenAnyPartChanges) {
  std::string secret = "whsec_" + random_base64(24);
  std::string base = sign(secret, "msg_1", 100, "{}");
  EXPECT_NE(base, sign(secret, "msg_2", 100, "{}"));
  EXPECT_NE(base, sign(secret, "msg_1", 101, "{}"));
  EXPECT_NE(base, sign(secret, "msg_1", 100, "{ }"));
  EXPECT_NE(base, sign("whsec_" + random_base64(24), "msg_1", 100, "{}"));
}

}  // namespace
}  // namespace earnd::webhooks
