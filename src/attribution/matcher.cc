#include "earnd/attribution/matcher.h"

#include <algorithm>

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

bool better(Model m,
            std::uint64_t a_ts,
            const ClickId& a_id,
            std::uint64_t b_ts,
            const ClickId& b_id) noexcept {
  if (m == Model::kLastClick) {
    return a_ts != b_ts ? a_ts > b_ts : a_id > b_id;
  }
  return a_ts != b_ts ? a_ts < b_ts : a_id < b_id;
}

namespace {

Candidate candidate_of(const ClickRecord& c) {
  return {c.ts_ms,
          c.id,
          c.reason,
          std::string(c.program),
          std::string(c.referrer_id),
          std::string(c.code)};
}

// The eligible clicks at the best time seen so far. The visitor index names a click's time and
// link; since format 3 it no longer holds the id, which only the tie-break between clicks of
// the same millisecond and a caller that names the winning click need.
struct Best {
  bool found = false;
  std::uint64_t ts = 0;
  bool have_known = false;       // an eligible click at ts whose id the index holds
  Candidate known;               // the best of those
  bool have_unresolved = false;  // an eligible click at ts without its id
  bool unresolved_links_differ = false;
  Candidate unresolved;  // the first of those (ts, reason and link; no id)

  void restart(std::uint64_t at) {
    *this = Best{};
    found = true;
    ts = at;
  }
};

}  // namespace

Result<std::optional<Candidate>> match(const store::Store& store,
                                       const MatchQuery& q,
                                       std::vector<Candidate>* candidates) {
  std::uint64_t from = q.at_ms >= q.window_ms ? q.at_ms - q.window_ms : 0;
  Best best;
  // The time of the id-less entry last listed into candidates (each time is read back once;
  // the scan is in time order).
  std::optional<std::uint64_t> listed;
  ErrorCode inner;
  auto ec = store.scan_visitor(q.visitor_hash, from, q.at_ms, [&](const store::VisitorClick& c) {
    // Clicks come oldest first: first_click is done once it is past its best time, unless the
    // caller wants every candidate listed.
    if (best.found && q.model == Model::kFirstClick && candidates == nullptr && c.ts_ms > best.ts) {
      return false;
    }
    if (!q.program.empty() && c.program != q.program) {
      return true;
    }
    if (candidates != nullptr) {
      if (c.has_id) {
        candidates->push_back({c.ts_ms, c.id, c.reason, std::string(c.program),
                               std::string(c.referrer_id), std::string(c.code)});
      } else if (listed != c.ts_ms) {
        // Every click of that millisecond; one an older store also indexed with its id is
        // listed twice and removed below.
        listed = c.ts_ms;
        inner = store.clicks_at(q.visitor_hash, c.ts_ms, [&](const ClickRecord& r) {
          if (q.program.empty() || r.program == q.program) {
            candidates->push_back(candidate_of(r));
          }
          return true;
        });
        if (inner) {
          return false;
        }
      }
    }
    if (c.reason != ClickReason::kHuman) {
      return true;
    }
    if (!best.found || (q.model == Model::kLastClick ? c.ts_ms > best.ts : c.ts_ms < best.ts)) {
      best.restart(c.ts_ms);
    } else if (c.ts_ms != best.ts) {
      return true;
    }
    if (c.has_id) {
      if (!best.have_known || better(q.model, c.ts_ms, c.id, best.ts, best.known.id)) {
        best.have_known = true;
        best.known = {c.ts_ms,
                      c.id,
                      c.reason,
                      std::string(c.program),
                      std::string(c.referrer_id),
                      std::string(c.code)};
      }
    } else if (!best.have_unresolved) {
      best.have_unresolved = true;
      best.unresolved = {c.ts_ms,
                         ClickId{},
                         c.reason,
                         std::string(c.program),
                         std::string(c.referrer_id),
                         std::string(c.code)};
    } else if (c.program != best.unresolved.program ||
               c.referrer_id != best.unresolved.referrer_id || c.code != best.unresolved.code) {
      best.unresolved_links_differ = true;
    }
    return true;
  });
  if (ec) {
    return ec;
  }
  if (inner) {
    return inner;
  }
  if (candidates != nullptr) {
    auto same = [](const Candidate& a, const Candidate& b) {
      return a.ts_ms == b.ts_ms && a.id == b.id;
    };
    std::sort(candidates->begin(), candidates->end(), [](const Candidate& a, const Candidate& b) {
      return a.ts_ms != b.ts_ms ? a.ts_ms < b.ts_ms : a.id < b.id;
    });
    candidates->erase(std::unique(candidates->begin(), candidates->end(), same), candidates->end());
  }
  if (!best.found) {
    return std::optional<Candidate>();
  }
  if (!best.have_unresolved) {
    return std::optional<Candidate>(std::move(best.known));
  }
  if (!q.need_id && !best.have_known && !best.unresolved_links_differ) {
    // One link at the winning time: the answer does not depend on which of its clicks wins.
    return std::optional<Candidate>(std::move(best.unresolved));
  }
  // Read the clicks of the winning millisecond back and break the tie by id.
  bool found = best.have_known;
  Candidate winner = std::move(best.known);
  ec = store.clicks_at(q.visitor_hash, best.ts, [&](const ClickRecord& r) {
    if (r.reason == ClickReason::kHuman && (q.program.empty() || r.program == q.program) &&
        (!found || better(q.model, r.ts_ms, r.id, winner.ts_ms, winner.id))) {
      found = true;
      winner = candidate_of(r);
    }
    return true;
  });
  if (ec) {
    return ec;
  }
  if (!found) {
    // The index names a click the clicks family does not have: both are written in one atomic
    // batch, so only a damaged store gets here.
    return make_error_code(Errc::kCorruptRecord);
  }
  return std::optional<Candidate>(std::move(winner));
}

}  // namespace earnd::attribution
