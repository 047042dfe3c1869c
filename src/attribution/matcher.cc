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

// From a stored click or a visitor-index entry (whose views are valid during its callback only).
template <class Click>
Candidate candidate_of(const Click& c) {
  return {c.ts_ms,
          c.id,
          c.reason,
          std::string(c.program),
          std::string(c.referrer_id),
          std::string(c.code)};
}

// One time in the window at which the visitor index names an eligible click (human, of the
// program). Entries written before format 3 carry the id. A format 3 entry holds one operand
// per click written at that time; the writers never write a stored click again (imports skip
// rows they have; see importer.h), so a lone operand is that click as it is stored. Several
// operands are several clicks in one millisecond (or, should a click ever be written twice,
// a stale copy beside the current one): that time is read back from the records, which decide.
struct Slot {
  std::uint64_t ts = 0;
  bool has_known = false;    // an eligible click at ts whose id the index holds
  Candidate known;           // the best of those
  bool has_hint = false;     // an eligible id-less operand at ts
  Candidate hint;            // the first of those: time, reason and link, no id
  std::size_t operands = 0;  // id-less operands at ts, eligible or not
};

// The best eligible click at the slot's time; nullopt when the records have none.
Result<std::optional<Candidate>> confirm(const store::Store& store,
                                         const MatchQuery& q,
                                         Slot& slot) {
  std::optional<Candidate> best;
  if (slot.has_known) {
    best = std::move(slot.known);
  }
  if (!slot.has_hint) {
    return best;
  }
  if (!q.need_id && !best && slot.operands == 1) {
    return std::optional<Candidate>(std::move(slot.hint));
  }
  auto ec = store.clicks_at(q.visitor_hash, slot.ts, [&](const ClickRecord& r) {
    if (r.reason == ClickReason::kHuman && (q.program.empty() || r.program == q.program) &&
        (!best || better(q.model, r.ts_ms, r.id, best->ts_ms, best->id))) {
      best = candidate_of(r);
    }
    return true;
  });
  if (ec) {
    return ec;
  }
  return best;
}

// last_click keeps at least this many of the latest eligible times while it scans; should every one
// of them fail its confirmation, the older part of the window is matched again.
constexpr std::size_t kKeptSlots = 32;

}  // namespace

Result<std::optional<Candidate>> match(const store::Store& store,
                                       const MatchQuery& q,
                                       std::vector<Candidate>* candidates,
                                       bool* candidates_cut) {
  std::uint64_t from = q.at_ms >= q.window_ms ? q.at_ms - q.window_ms : 0;
  const bool last = q.model == Model::kLastClick;
  if (candidates_cut != nullptr) {
    *candidates_cut = false;
  }

  // The candidates to list, at most kMaxCandidates at the model's end of the window; an
  // id-less index entry is listed as its time (id zero, `resolved` false) and read back from
  // the clicks family once the scan is done, so a visitor with a flood of clicks costs a
  // bounded number of reads.
  struct Item {
    Candidate c;
    bool resolved = true;
  };

  std::deque<Item> items;
  bool cut = false;
  auto keep = [&](Item item) {
    if (!last && items.size() >= kMaxCandidates) {
      cut = true;
      return;
    }
    items.push_back(std::move(item));
    if (items.size() > kMaxCandidates) {
      items.pop_front();
      cut = true;
    }
  };

  std::vector<Slot> slots;  // eligible times not yet confirmed, oldest first
  bool dropped = false;     // last_click: older slots were let go
  std::optional<Candidate> winner;
  ErrorCode inner;
  std::uint64_t operands_ts = 0;  // the time of the id-less operands counted in operands_at
  std::size_t operands_at = 0;
  // first_click: confirms the earliest pending time once the scan is past it.
  auto settle_first = [&] {
    while (!winner && !slots.empty()) {
      auto got = confirm(store, q, slots.front());
      if (!got) {
        inner = got.error();
        return;
      }
      winner = std::move(*got);
      slots.erase(slots.begin());
    }
  };
  auto ec = store.scan_visitor(q.visitor_hash, from, q.at_ms, [&](const store::VisitorClick& c) {
    if (!last && !winner && !slots.empty() && c.ts_ms > slots.back().ts) {
      settle_first();
      if (inner) {
        return false;
      }
    }
    // Clicks come oldest first: first_click is done once it has a winner and has listed what
    // it lists.
    if (!last && winner && (candidates == nullptr || items.size() >= kMaxCandidates)) {
      cut = cut || candidates != nullptr;
      return false;
    }
    if (!c.has_id) {
      operands_at = c.ts_ms == operands_ts ? operands_at + 1 : 1;
      operands_ts = c.ts_ms;
      if (!slots.empty() && slots.back().ts == c.ts_ms) {
        slots.back().operands = operands_at;
      }
    }
    if (!q.program.empty() && c.program != q.program) {
      return true;
    }
    if (candidates != nullptr) {
      if (c.has_id) {
        keep({candidate_of(c)});
      } else if (items.empty() || items.back().resolved || items.back().c.ts_ms != c.ts_ms) {
        keep({{c.ts_ms, ClickId{}, c.reason, {}, {}, {}}, false});
      }
    }
    if (c.reason != ClickReason::kHuman || (!last && winner)) {
      return true;
    }
    if (slots.empty() || slots.back().ts != c.ts_ms) {
      slots.emplace_back();
      slots.back().ts = c.ts_ms;
      if (last && slots.size() > 2 * kKeptSlots) {
        // Keep the latest kKeptSlots (moving them once per kKeptSlots new times).
        slots.erase(slots.begin(), slots.begin() + kKeptSlots);
        dropped = true;
      }
    }
    Slot& slot = slots.back();
    if (c.has_id) {
      if (!slot.has_known || better(q.model, c.ts_ms, c.id, slot.ts, slot.known.id)) {
        slot.has_known = true;
        slot.known = candidate_of(c);
      }
    } else {
      slot.operands = operands_at;
      if (!slot.has_hint) {
        slot.has_hint = true;
        slot.hint = candidate_of(c);
        slot.hint.id = ClickId{};
      }
    }
    return true;
  });
  if (ec) {
    return ec;
  }
  if (inner) {
    return inner;
  }
  if (last) {
    std::uint64_t oldest = slots.empty() ? 0 : slots.front().ts;
    while (!winner && !slots.empty()) {
      auto got = confirm(store, q, slots.back());
      if (!got) {
        return got.error();
      }
      winner = std::move(*got);
      slots.pop_back();
    }
    if (!winner && dropped && oldest > from) {
      // Every kept time was a stale hint: match the older part of the window.
      MatchQuery older = q;
      older.at_ms = oldest - 1;
      older.window_ms = older.at_ms - from;
      auto got = match(store, older);
      if (!got) {
        return got.error();
      }
      winner = std::move(*got);
    }
  } else {
    settle_first();
    if (inner) {
      return inner;
    }
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
    auto order = [](const Candidate& a, const Candidate& b) {
      return a.ts_ms != b.ts_ms ? a.ts_ms < b.ts_ms : a.id < b.id;
    };
    std::sort(listed.begin(), listed.end(), order);
    listed.erase(std::unique(listed.begin(), listed.end(), same), listed.end());
    // The winner is always listed, even when it lies past the listed end of the window.
    if (winner && std::none_of(listed.begin(), listed.end(),
                               [&](const Candidate& c) { return same(c, *winner); })) {
      listed.insert(std::upper_bound(listed.begin(), listed.end(), *winner, order), *winner);
      cut = true;
    }
    // A millisecond read back may hold several clicks, and the winner may have been added:
    // trim to the bound again at the far end, never the winner.
    while (listed.size() > kMaxCandidates) {
      cut = true;
      if (last) {
        listed.erase(same(listed.front(), *winner) ? listed.begin() + 1 : listed.begin());
      } else {
        listed.erase(same(listed.back(), *winner) ? listed.end() - 2 : listed.end() - 1);
      }
    }
    for (auto& c : listed) {
      candidates->push_back(std::move(c));
    }
    if (candidates_cut != nullptr) {
      *candidates_cut = cut;
    }
  }
  return winner;
}

}  // namespace earnd::attribution
