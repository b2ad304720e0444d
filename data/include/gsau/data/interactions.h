// Reading interaction datasets: the formats of ../shared/datasets, in project types only; and
// writing the TSV that `gsau split` produces.
//
// Formats (chosen by ReadOptions::format, or detected from the first line that is not blank:
// kTsv when it has a tab and 3 or more fields, or no tab and 3 or more fields separated by
// commas, semicolons or '|' with no space outside quotes; else kUserLines):
//  - kTsv: a table separated by tabs (or the first line's comma, semicolon or '|'): an optional
//    header line, then `user_id<TAB>item_id<TAB>timestamp`. A field starting with a double
//    quote is quoted as CSV writers quote (up to the closing quote, "" for a quote; on one line);
//    a quote left open or text after a closing one is an error. A header that
//    names the user, item and time columns (user_id/userId/user/SessionId/session_id/session/
//    reviewerID, item_id/itemId/item/movieId/movie_id/asin, timestamp/timestamp_ms/timestamp_s/
//    ts/time/unixReviewTime, any case, the leftmost column so named; only when none is, also
//    visitorId/visitor_id/customer_id/customerId, product_id/productId/article_id/articleId,
//    event_time/datetime/date/eventdate) picks them wherever they are and the
//    other columns are ignored; otherwise they are the first three, and more than three columns
//    are an error (which one is the time would be a guess: MovieLens' third is its rating).
//    With dates (YYYY-MM-DD, no time of day), a column named kTimeOffsetColumn (`timeframe`,
//    any case: DIGINETICA's milliseconds since the session's first click, below 1e12) orders
//    the clicks of a day (Interaction::order), so that a session's keep their order; the time
//    stays the date. With date-times or numbers it is ignored. A column named event/event_type/eventtype (any case, the leftmost; RetailRocket's
//    view/addtocart/transaction) is each row's event type (Interaction::event, spaces around it
//    trimmed), which replay sends as the click's. Both are optional in a row: missing, empty or
//    a missing value's mark (NA, null, nan, ...) is no offset, or no type.
//    Timestamps are numbers in seconds (fractions allowed), milliseconds, micro- or nanoseconds,
//    see TimeUnit; a time column named `timestamp_ms` (kTsvMillisecondsColumn, any case) makes kAuto read
//    milliseconds (an explicit unit wins). Or ISO 8601 dates or date-times (2016-05-09,
//    2014-04-07T10:51:09.277Z, 2019-10-01 00:00:00 UTC, +02:00, +0200 or +02 offsets; T, Z, UTC
//    in either case; no zone = UTC; the unit options do not apply), one kind of time per file
//    (the first row's).
//    Blank lines and blanks around a time are skipped;
//    blanks around an id are an error (they would make another id of it).
//    Gzip-compressed when the name ends in .gz or the file starts with gzip's magic bytes
//    (needs zlib at build time); a truncated or corrupt stream is an error.
//  - kUserLines: one line per user (a user id on two lines is an error), `uid i1 i2 ...` in
//    the user's order, optionally with an aligned times file of the same shape and line count
//    (`uid t1 t2 ...`, in ReadOptions::time_unit; a blank items line has a blank times line).
//    Without times, an event's time is its position in the user's line (0, 1, 2, ...), so time
//    order interleaves users round-robin.
// Lines end in \n or \r\n (a carriage return inside a line is an error: old Mac line ends read
// as one line). A time whose milliseconds do not fit in int64 is an error.
//
// Ids stay external strings here; dense ids are given by whoever consumes the events.
// Thread safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gsau/common/status.h"

namespace gsau::data {

struct Interaction {
  std::string user_id;
  std::string item_id;
  int64_t ts_ms = 0;   // event time, ms since the Unix epoch (or the position, see above)
  int64_t order = 0;   // index of the row in the file (TSV) or position in the user's line:
                       // breaks time ties deterministically
  bool has_time = true;  // false when ts_ms is only a position (user lines without times)
  std::string event{};   // the row's event type (a TSV header's event column), empty when none
                         // (an event without a type: kDefaultEventType, "click")
};

enum class Format { kAuto, kTsv, kUserLines };
enum class TimeUnit { kAuto, kSeconds, kMilliseconds };

// The name of a TSV header's time column that says its timestamps are milliseconds, whatever
// their magnitude (`timestamp` or `timestamp_s` leave the unit to ReadOptions::time_unit).
inline constexpr std::string_view kTsvMillisecondsColumn = "timestamp_ms";

// The name of a TSV header's column of milliseconds added to a date or date-time (see above).
inline constexpr std::string_view kTimeOffsetColumn = "timeframe";

struct ReadOptions {
  Format format = Format::kAuto;
  // For kUserLines: the aligned times file; empty = no times.
  std::string times_path;
  // kAuto: one unit for the whole file, by the magnitude of its largest time: below 1e11 seconds
  // (1e11 s is year 5138; 1e11 ms is 1973), below 1e14 milliseconds, below 1e17 microseconds,
  // and nanoseconds above; unless a TSV's header names its time column kTsvMillisecondsColumn
  // (then milliseconds). One per file keeps the file's order of times, whatever the unit.
  TimeUnit time_unit = TimeUnit::kAuto;
  // Stop after this many interactions (0 = all).
  int64_t limit = 0;
};

// Reads every interaction of `path` in file order. Errors name the file and line; a directory,
// a file without interactions, and a times file given with a TSV are kInvalidArgument.
Result<std::vector<Interaction>> ReadInteractions(const std::string& path,
                                                  const ReadOptions& options = {});

// Sorts by (ts_ms, user_id, order): event-time order with deterministic ties, each user's
// own order kept.
void SortByTime(std::vector<Interaction>& events);

// Writes `events` to `path` as a TSV that ReadInteractions reads back equal (user, item, ts_ms
// and event; a `user_id item_id timestamp_ms` header, and `event` when any event has a type),
// through `path`.tmp renamed over `path`.
// IoError naming the file.
Status WriteInteractionsTsv(const std::string& path, const std::vector<Interaction>& events);

// Reads a whole file, transparently gunzipping gzip files (named .gz, or starting with its magic
// bytes), without a UTF-8 byte-order mark.
Result<std::string> ReadFileText(const std::string& path);

}  // namespace gsau::data
