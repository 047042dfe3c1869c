#include "earnd/attribution/matcher.h"

#include <algorithm>
#include <deque>

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

  // The candidates to list, at most kMaxCandidates at the model's end of the window; an
  // id-less index entry is listed as its time (id zero, `resolved` false) and read back from
  // the clicks family once the scan is done, so a visitor with a flood of clicks costs a
  // bounded number of reads.
  struct Item {
    Candidate c;
    bool resolved = true;
  };

  std::deque<Item> items;
  auto keep = [&](Item item) {
    if (q.model == Model::kFirstClick && items.size() >= kMaxCandidates) {
      return;
    }
    items.push_back(std::move(item));
    if (items.size() > kMaxCandidates) {
      items.pop_front();
    }
  };
  auto ec = store.scan_visitor(q.visitor_hash, from, q.at_ms, [&](const store::VisitorClick& c) {
    // Clicks come oldest first: first_click is done once it is past its best time and has
    // listed what it lists.
    if (best.found && q.model == Model::kFirstClick && c.ts_ms > best.ts &&
        (candidates == nullptr || items.size() >= kMaxCandidates)) {
      return false;
    }
    if (!q.program.empty() && c.program != q.program) {
      return true;
    }
    if (candidates != nullptr) {
      if (c.has_id) {
        keep({{c.ts_ms, c.id, c.reason, std::string(c.program), std::string(c.referrer_id),
               std::string(c.code)}});
      } else if (items.empty() || items.back().resolved || items.back().c.ts_ms != c.ts_ms) {
        keep({{c.ts_ms, ClickId{}, c.reason, {}, {}, {}}, false});
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
  if (candidates != nullptr) {
    std::vector<Candidate> listed;
    std::vector<std::uint64_t> times;
    for (auto& item : items) {
      if (item.resolved) {
        listed.push_back(std::move(item.c));
      } else {
        times.push_back(item.c.ts_ms);
      }
    }
    // Every click of those milliseconds; one an older store also indexed with its id is listed
    // twice and removed below.
    ec = store.clicks_at(q.visitor_hash, times, [&](const ClickRecord& r) {
      if (q.program.empty() || r.program == q.program) {
        listed.push_back(candidate_of(r));
      }
      return true;
    });
    if (ec) {
      return ec;
    }
    auto same = [](const Candidate& a, const Candidate& b) {
      return a.ts_ms == b.ts_ms && a.id == b.id;
    };
    std::sort(listed.begin(), listed.end(), [](const Candidate& a, const Candidate& b) {
      return a.ts_ms != b.ts_ms ? a.ts_ms < b.ts_ms : a.id < b.id;
    });
    listed.erase(std::unique(listed.begin(), listed.end(), same), listed.end());
    // A millisecond read back may hold several clicks: trim to the bound again.
    if (listed.size() > kMaxCandidates) {
      auto extra = static_cast<std::ptrdiff_t>(listed.size() - kMaxCandidates);
      if (q.model == Model::kLastClick) {
        listed.erase(listed.begin(), listed.begin() + extra);
      } else {
        listed.erase(listed.end() - extra, listed.end());
      }
    }
    for (auto& c : listed) {
      candidates->push_back(std::move(c));
    }
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
