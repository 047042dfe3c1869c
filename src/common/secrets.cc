#include "earnd/common/secrets.h"

#include <cstdlib>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace earnd {
namespace {

void random_bytes(unsigned char* out, std::size_t n) {
  if (RAND_bytes(out, static_cast<int>(n)) != 1) {
    std::abort();  // no safe way to make a secret without the generator
  }
}

}  // namespace

std::string random_token(std::string_view prefix, std::size_t n) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string out(prefix);
  std::vector<unsigned char> buf(n);
  std::size_t filled = 0;
  while (filled < n) {
    random_bytes(buf.data(), n);
    for (std::size_t i = 0; i < n && filled < n; ++i) {
      // Rejection sampling keeps every character equally likely (252 = 7 * 36).
      if (buf[i] < 252) {
        out.push_back(kAlphabet[buf[i] % 36]);
        ++filled;
      }
    }
  }
  return out;
}

std::string random_base64(std::size_t n) {
  std::vector<unsigned char> raw(n);
  random_bytes(raw.data(), n);
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), raw.data(),
                            static_cast<int>(n));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * SHA256_DIGEST_LENGTH);
  for (unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) {
    return false;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace earnd
