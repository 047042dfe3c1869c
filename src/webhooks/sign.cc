#include <optional>
#include <string>
#include <string_view>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "earnd/webhooks/outbox.h"

namespace earnd::webhooks {
namespace {

constexpr std::string_view kSecretPrefix = "whsec_";

// Standard base64 with padding; nullopt when text is not valid base64.
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) {
    return std::nullopt;
  }
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) {
    return std::nullopt;
  }
  // EVP_DecodeBlock counts the padding as zero bytes.
  std::size_t padding = text.ends_with("==") ? 2 : text.ends_with("=") ? 1 : 0;
  out.resize(static_cast<std::size_t>(n) - padding);
  return out;
}

std::string base64_encode(const unsigned char* data, std::size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

// The HMAC key: the decoded bytes after "whsec_". A secret that is not in that form is used as
// it is, as Standard Webhooks libraries do for keys imported from elsewhere.
std::string signing_key(std::string_view secret) {
  if (secret.starts_with(kSecretPrefix)) {
    if (auto decoded = base64_decode(secret.substr(kSecretPrefix.size()))) {
      return *decoded;
    }
  }
  return std::string(secret);
}

}  // namespace

std::string sign(std::string_view secret,
                 std::string_view id,
                 std::uint64_t timestamp_s,
                 std::string_view body) {
  std::string key = signing_key(secret);
  std::string content;
  content.reserve(id.size() + body.size() + 24);
  content.append(id).append(".").append(std::to_string(timestamp_s)).append(".").append(body);

  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(content.data()), content.size(), mac, &mac_len);
  return "v1," + base64_encode(mac, mac_len);
}

}  // namespace earnd::webhooks
