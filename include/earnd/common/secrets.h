#pragma once

// Random tokens and digests for keys and secrets (OpenSSL underneath). Startup and admin paths
// only: each call allocates.

#include <cstddef>
#include <string>
#include <string_view>

namespace earnd {

// prefix + n characters from [a-z0-9], each from OpenSSL's generator (about 5.2 bits each).
std::string random_token(std::string_view prefix, std::size_t n);

// Standard base64 of n random bytes.
std::string random_base64(std::size_t n);

// Lower-case hex SHA-256 of data.
std::string sha256_hex(std::string_view data);

// Compares in time independent of where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

}  // namespace earnd
