#pragma once

// The project's one error scheme for steady-state code: functions that can fail return
// ErrorCode or Result<T>; our own failures are Errc values in the earnd category.

#include <string>
#include <type_traits>

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace earnd {

using ErrorCode = boost::system::error_code;

template <typename T>
using Result = boost::system::result<T, ErrorCode>;

// Failures raised by earnd itself. Values are stable: they appear in logs and metrics.
enum class Errc {
  kOk = 0,
  kInvalidArgument = 1,
  kNotFound = 2,
  kAlreadyExists = 3,
  kCorruptRecord = 4,
  kStorage = 5,
  kUnauthorized = 6,
  kConflict = 7,
  kOverloaded = 8,
  kShuttingDown = 9,
  kNoSpace = 10,  // the data directory's file system is below its free-space reserve
};

// The category of Errc codes; a process-wide singleton, safe from any thread.
const boost::system::error_category& earnd_category() noexcept;

inline ErrorCode make_error_code(Errc e) noexcept {
  return ErrorCode(static_cast<int>(e), earnd_category());
}

// Thrown only while starting up (config, opening storage, binding sockets); main() reports it.
class StartupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConfigError : public StartupError {
 public:
  using StartupError::StartupError;
};

}  // namespace earnd

template <>
struct boost::system::is_error_code_enum<earnd::Errc> : std::true_type {};
