#pragma once

// Picking the click a conversion is credited to. One visitor's clicks in the window
// [t - window, t] (both ends inclusive) are the candidates; non-human clicks never win; the
// model picks the latest (last_click) or earliest (first_click) by (time, click id). Used by
// the online conversion API and by `earnctl attribute`, so both answer alike.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "earnd/common/click.h"
#include "earnd/common/error.h"

namespace earnd::store {
class Store;
}

namespace earnd::attribution {

enum class Model { kLastClick, kFirstClick };

// "last_click" or "first_click"; nullopt for anything else.
std::optional<Model> parse_model(std::string_view text) noexcept;
std::string_view model_name(Model m) noexcept;

struct Candidate {
  std::uint64_t ts_ms = 0;
  ClickId id;
  ClickReason reason = ClickReason::kHuman;
  std::string program;
  std::string referrer_id;
  std::string code;
};

struct MatchQuery {
  std::uint64_t visitor_hash = 0;
  std::uint64_t at_ms = 0;      // the conversion's time
  std::uint64_t window_ms = 0;  // 30 days = 2,592,000,000
  Model model = Model::kLastClick;
  std::string_view program;  // only this program's clicks; "" for any
  // False when the caller needs only the winning link (batch queries): the winner's id is then
  // left zero when the visitor index alone decides (one click at the winning time), which
  // saves reading the click back.
  bool need_id = true;
};

// True when a is preferred over b under the model: later (last_click) or earlier (first_click)
// by (ts_ms, click id bytes).
bool better(Model m,
            std::uint64_t a_ts,
            const ClickId& a_id,
            std::uint64_t b_ts,
            const ClickId& b_id) noexcept;

// At most this many candidates are listed for an explanation: the latest clicks of the window
// for last_click, the earliest for first_click (a visitor flooding clicks must not make each of
// its conversions read and store them all).
inline constexpr std::size_t kMaxCandidates = 100;

// The winning human click, or nullopt. When candidates is not null, the visitor's clicks in the
// window (human or not; at most kMaxCandidates, at the model's end, and always the winner) are
// appended to it in (time, id) order, for explanations; *candidates_cut then tells whether
// some were left out. Reads the visitor index, and the clicks family to confirm the winner
// and to list candidates; thread-safe (the store is).
[[nodiscard]] Result<std::optional<Candidate>> match(const store::Store& store,
                                                     const MatchQuery& q,
                                                     std::vector<Candidate>* candidates = nullptr,
                                                     bool* candidates_cut = nullptr);

}  // namespace earnd::attribution
