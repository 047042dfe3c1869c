#include "earnd/attribution/matcher.h"

#include "earnd/store/store.h"

namespace earnd::attribution {

std::optional<Model> parse_model(std::string_view text) noexcept {
  if (text == "last_click") {
    return Model::kLastClick;
  }
  if (text == "first_click") {
    return Model::kFirstClick;
  }
  return std::nullopt;
}

std::string_view model_name(Model m) noexcept {
  return m == Model::kLastClick ? "last_click" : "first_click";
}

bool better(Model m, std::uint64_t a_ts, const ClickId& a_id, std::uint64_t b_ts,
            const ClickId& b_id) noexcept {
  if (m == Model::kLastClick) {
    return a_ts != b_ts ? a_ts > b_ts : a_id > b_id;
  }
  return a_ts != b_ts ? a_ts < b_ts : a_id < b_id;
}

Result<std::optional<Candidate>> match(const store::Store& store,
                                       const MatchQuery& q,
                                       std::vector<Candidate>* candidates) {
  std::uint64_t from = q.at_ms >= q.window_ms ? q.at_ms - q.window_ms : 0;
  bool found = false;
  std::uint64_t best_ts = 0;
  ClickId best_id;
  Candidate best;
  auto ec = store.scan_visitor(q.visitor_hash, from, q.at_ms, [&](const store::VisitorClick& c) {
    if (!q.program.empty() && c.program != q.program) {
      return true;
    }
    if (candidates != nullptr) {
      candidates->push_back({c.ts_ms, c.id, c.reason, std::string(c.program),
                             std::string(c.referrer_id), std::string(c.code)});
    }
    if (c.reason == ClickReason::kHuman &&
        (!found || better(q.model, c.ts_ms, c.id, best_ts, best_id))) {
      found = true;
      best_ts = c.ts_ms;
      best_id = c.id;
      best = {c.ts_ms, c.id, c.reason, std::string(c.program), std::string(c.referrer_id),
              std::string(c.code)};
    }
    // Clicks come oldest first: first_click can stop at its first human click unless the
    // caller wants every candidate listed.
    return !(found && q.model == Model::kFirstClick && candidates == nullptr);
  });
  if (ec) {
    return ec;
  }
  if (!found) {
    return std::optional<Candidate>();
  }
  return std::optional<Candidate>(std::move(best));
}

}  // namespace earnd::attribution
