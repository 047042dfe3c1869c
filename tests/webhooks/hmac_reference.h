#pragma once

// A second, independent computation of the Standard Webhooks signature for the tests: the key
// is decoded with OpenSSL's streaming base64 decoder and the MAC computed with EVP_MAC, neither
// of which the code under test uses.

#include <string>
#include <string_view>
#include <vector>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

namespace earnd::webhooks::testing {

inline std::string reference_base64_decode(std::string_view text) {
  EVP_ENCODE_CTX* ctx = EVP_ENCODE_CTX_new();
  EVP_DecodeInit(ctx);
  std::vector<unsigned char> out(text.size() + 3);
  int len = 0;
  int tail = 0;
  EVP_DecodeUpdate(ctx, out.data(), &len, reinterpret_cast<const unsigned char*>(text.data()),
                   static_cast<int>(text.size()));
  EVP_DecodeFinal(ctx, out.data() + len, &tail);
  EVP_ENCODE_CTX_free(ctx);
  return std::string(reinterpret_cast<const char*>(out.data()),
                     static_cast<std::size_t>(len + tail));
}

inline std::string reference_hmac_base64(std::string_view key, std::string_view content) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params);
  EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(content.data()), content.size());
  unsigned char out[64];
  std::size_t out_len = 0;
  EVP_MAC_final(ctx, out, &out_len, sizeof(out));
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);

  std::string encoded(4 * ((out_len + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()), out,
                          static_cast<int>(out_len));
  encoded.resize(static_cast<std::size_t>(n));
  return encoded;
}

// "v1," + base64(HMAC-SHA256(decoded secret, id.timestamp.body)).
inline std::string reference_signature(std::string_view secret,
                                       std::string_view id,
                                       std::string_view timestamp,
                                       std::string_view body) {
  std::string key = reference_base64_decode(secret.substr(6));  // after "whsec_"
  std::string content = std::string(id) + "." + std::string(timestamp) + "." + std::string(body);
  return "v1," + reference_hmac_base64(key, content);
}

}  // namespace earnd::webhooks::testing
