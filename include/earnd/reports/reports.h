#pragma once

// Referrer and time-series reports over the stored aggregates: per-link click counters and
// per-referrer conversion counters, both kept in 15-minute buckets, summed into days or hours
// of an IANA time zone. No report scans clicks or conversions one by one.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "earnd/common/error.h"

namespace earnd::links {
class Catalog;
}

namespace earnd::store {
class Store;
}

namespace earnd::reports {

// The query of a report, as given in the URL. from/to are dates (both inclusive, in tz) or
// RFC 3339 times; tz defaults to UTC.
struct ReportQuery {
  std::string program;
  std::string referrer;  // "" for the whole program; else that referrer's series or row only
  std::string from;
  std::string to;
  std::string tz = "UTC";
  std::string interval = "day";  // timeseries only: hour or day
  std::string format = "json";   // json or csv
};

struct ReportReply {
  unsigned status = 200;
  std::string content_type;
  std::string body;
};

// GET /v1/reports/referrers. Thread-safe (reads only). 400 with the contract's error body on a
// bad query.
ReportReply referrers_report(const store::Store& store,
                             const links::Catalog& catalog,
                             const ReportQuery& q);

// GET /v1/reports/timeseries.
ReportReply timeseries_report(const store::Store& store,
                              const links::Catalog& catalog,
                              const ReportQuery& q);

// A report boundary in Unix ms: an RFC 3339 time, or a date in the IANA zone tz meaning that
// day's start (with is_to, the next day's start, so that the date is included). nullopt when
// the text is neither or the zone is unknown. Thread-safe.
std::optional<std::uint64_t> parse_boundary(std::string_view text, std::string_view tz, bool is_to);

// A CSV cell: fields starting with =, +, -, @, a tab or a carriage return (OWASP) get a leading
// apostrophe so that spreadsheets do not run them as formulas; fields with commas, quotes or
// line breaks are quoted.
std::string csv_cell(std::string_view s);

}  // namespace earnd::reports
