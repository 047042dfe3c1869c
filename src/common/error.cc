#include "earnd/common/error.h"

namespace earnd {
namespace {

class EarndCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "earnd"; }

  std::string message(int ev) const override {
    switch (static_cast<Errc>(ev)) {
      case Errc::kOk:
        return "ok";
      case Errc::kInvalidArgument:
        return "invalid argument";
      case Errc::kNotFound:
        return "not found";
      case Errc::kAlreadyExists:
        return "already exists";
      case Errc::kCorruptRecord:
        return "corrupt record";
      case Errc::kStorage:
        return "storage failure";
      case Errc::kUnauthorized:
        return "unauthorized";
      case Errc::kConflict:
        return "conflict";
      case Errc::kOverloaded:
        return "overloaded";
      case Errc::kShuttingDown:
        return "shutting down";
      case Errc::kNoSpace:
        return "no space left on the data directory's file system";
    }
    return "unknown earnd error";
  }
};

}  // namespace

const boost::system::error_category& earnd_category() noexcept {
  static const EarndCategory category;
  return category;
}

}  // namespace earnd
