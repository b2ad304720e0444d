#include "gsau/data/interactions.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <utility>
#include <string_view>
#include <unordered_map>

#if defined(GSAU_HAVE_ZLIB)
#include <zlib.h>
#endif

#include "gsau/common/event.h"
#include "gsau/common/file.h"

namespace gsau::data {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::vector<std::string_view> SplitWs(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

// Without the spaces around it (an editor's trailing blanks).
std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Days from 1970-01-01 to the proleptic Gregorian date y-m-d (negative before it): whole
// 400-year eras of 146,097 days, then the day of the era counted from March 1st, so that a leap
// day falls at the end of its year.
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t year_of_era = y - era * 400;                                 // [0, 399]
  const int64_t day_of_year = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;  // 719,468 days from 0000-03-01 to 1970-01-01
}

// `n` digits at s[*pos] as a number (*pos moves past them); false when they are not there.
bool Digits(std::string_view s, size_t* pos, size_t n, int* out) {
  if (*pos + n > s.size()) return false;
  int v = 0;
  for (size_t k = 0; k < n; ++k) {
    const char c = s[*pos + k];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

// An ISO 8601 date or date-time as datasets write them: `2016-05-09`, `2014-04-07T10:51:09.277Z`,
// `2019-10-01 00:00:00 UTC`, `2019-10-01T02:00:00+02:00` (or +0200, +02); seconds and their
// fraction optional; T, Z and UTC in either case; no zone is UTC. Milliseconds since the epoch,
// with the fraction below a millisecond (for the order of clicks within one). False for anything
// else, an impossible date among them.
bool ParseDateTime(std::string_view s, double* ms) {
  s = TrimSpaces(s);
  size_t pos = 0;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!Digits(s, &pos, 4, &y) || pos >= s.size() || s[pos++] != '-' || !Digits(s, &pos, 2, &mo) ||
      pos >= s.size() || s[pos++] != '-' || !Digits(s, &pos, 2, &d)) {
    return false;
  }
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] + (mo == 2 && leap ? 1 : 0)) return false;
  double fraction_ms = 0;
  if (pos + 1 < s.size() && (s[pos] == 'T' || s[pos] == 't' || s[pos] == ' ') && s[pos + 1] >= '0' &&
      s[pos + 1] <= '9') {
    ++pos;
    if (!Digits(s, &pos, 2, &h) || pos >= s.size() || s[pos++] != ':' || !Digits(s, &pos, 2, &mi)) return false;
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!Digits(s, &pos, 2, &sec)) return false;
      if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
        double scale = 100;  // ms per unit of the first digit after the point
        ++pos;
        const size_t first = pos;
        for (; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos, scale /= 10) {
          fraction_ms += (s[pos] - '0') * scale;
        }
        if (pos == first) return false;
      }
    }
    if (h > 23 || mi > 59 || sec > 59) return false;
  }
  int offset_min = 0;
  std::string_view zone = TrimSpaces(s.substr(pos));
  const auto is = [&](std::string_view name) {
    return zone.size() == name.size() && std::equal(zone.begin(), zone.end(), name.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
           });
  };
  if (zone.empty() || is("Z") || is("UTC")) {
  } else if (zone.front() == '+' || zone.front() == '-') {
    size_t z = 1;
    int zh = 0, zm = 0;
    if (!Digits(zone, &z, 2, &zh)) return false;
    if (z < zone.size() && zone[z] == ':') ++z;
    // +hh alone (PostgreSQL writes +00), +hh:mm or +hhmm.
    if (z < zone.size() && !Digits(zone, &z, 2, &zm)) return false;
    if (z != zone.size() || zh > 23 || zm > 59) return false;
    offset_min = (zone.front() == '+' ? 1 : -1) * (zh * 60 + zm);
  } else {
    return false;
  }
  const int64_t seconds = DaysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - int64_t{offset_min} * 60;
  *ms = static_cast<double>(seconds) * 1000.0 + fraction_ms;
  return true;
}

// One line of a table's fields, separated by `sep`. A field that starts with a double quote is
// quoted as CSV writers (pandas, spreadsheets) quote one holding the separator or a quote: up
// to the closing quote, a doubled quote standing for one; its text is then kept in `owned`,
// whose elements must outlive the views. A quote elsewhere is an ordinary character. False
// (with `error` set) for a quote left open or text after a closing one.
bool SplitFields(std::string_view line, char sep, std::vector<std::string_view>* out, std::deque<std::string>* owned,
                 std::string* error) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  out->clear();
  size_t start = 0;
  while (true) {
    if (start < line.size() && line[start] == '"') {
      std::string text;
      size_t k = start + 1;
      while (true) {
        const size_t q = line.find('"', k);
        if (q == std::string_view::npos) {
          *error = "a quoted field is not closed on its line (field " + std::to_string(out->size() + 1) + ")";
          return false;
        }
        text.append(line.substr(k, q - k));
        if (q + 1 < line.size() && line[q + 1] == '"') {
          text += '"';
          k = q + 2;
          continue;
        }
        k = q + 1;
        break;
      }
      if (k < line.size() && line[k] != sep) {
        *error = "text after the closing quote of field " + std::to_string(out->size() + 1);
        return false;
      }
      out->push_back(owned->emplace_back(std::move(text)));
      if (k >= line.size()) break;
      start = k + 1;
      continue;
    }
    const size_t at = line.find(sep, start);
    out->push_back(line.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) break;
    start = at + 1;
  }
  return true;
}

// The fields of `line` split at `sep` (quotes as SplitFields; a line they do not split gives one field).
std::vector<std::string_view> Fields(std::string_view line, char sep, std::deque<std::string>* owned) {
  std::vector<std::string_view> out;
  std::string ignored;
  if (!SplitFields(line, sep, &out, owned, &ignored)) return {line};
  return out;
}

// The separator of a table whose first line is `first`: a tab when it has one, else a comma,
// semicolon or '|' that splits it into three fields or more, none of them holding a space
// between two words outside quotes (per-user lines separate ids with spaces: `u1 a,b,c` is one
// of those; `user_id, item_id, timestamp` is a table, whose ids with spaces around are then
// refused, not per-user lines with times for items); the one giving the most fields. 0 when
// none does.
char TableSeparator(std::string_view first) {
  if (first.find('\t') != std::string_view::npos) {
    std::deque<std::string> owned;
    return Fields(first, '\t', &owned).size() >= 3 ? '\t' : 0;
  }
  char best = 0;
  size_t most = 2;
  for (const char sep : {',', ';', '|'}) {
    std::deque<std::string> quoted;
    const auto f = Fields(first, sep, &quoted);
    const auto bare_space = [&](std::string_view x) {
      const bool was_quoted =
          std::any_of(quoted.begin(), quoted.end(), [&](const std::string& q) { return q.data() == x.data(); });
      double ignored;  // a date-time's space (`2019-10-01 00:00:00`) is not per-user lines' separator
      return !was_quoted && TrimSpaces(x).find(' ') != std::string_view::npos && !ParseDateTime(x, &ignored);
    };
    if (f.size() > most && std::none_of(f.begin(), f.end(), bare_space)) {
      best = sep;
      most = f.size();
    }
  }
  return best;
}

// How a message names the separator.
std::string SeparatedBy(char sep) {
  switch (sep) {
    case '\t':
      return "tab-separated";
    case ',':
      return "comma-separated";
    case ';':
      return "semicolon-separated";
    default:
      return std::string("'") + sep + "'-separated";
  }
}

// Empty, or spaces, tabs and a CR only.
bool IsBlank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

bool ParseDouble(std::string_view s, double* out) {
  s = TrimSpaces(s);
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(*out);
}

template <typename Fn>
void ForEachLine(const std::string& text, Fn&& fn) {
  size_t start = 0;
  int64_t lineno = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    ++lineno;
    if (!fn(std::string_view(text).substr(start, nl - start), lineno)) return;
    start = nl + 1;
  }
}

Status LineError(const std::string& path, int64_t lineno, const std::string& what) {
  return Status::InvalidArgument(path + ":" + std::to_string(lineno) + ": " + what);
}

// A carriage return not ending a line (classic Mac line ends): the file read as one line, and
// without a times file all its users silently became the first.
Status CheckLineEnds(const std::string& path, const std::string& text) {
  for (size_t cr = text.find('\r'); cr != std::string::npos; cr = text.find('\r', cr + 1)) {
    const size_t end = text.find_first_not_of('\r', cr);  // \r\r\n: a CRLF file converted twice
    if (end != std::string::npos && text[end] != '\n') {
      const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(cr), '\n');
      return LineError(path, line, "a carriage return inside the line: lines must end in \\n or \\r\\n");
    }
    if (end == std::string::npos) break;
    cr = end;
  }
  return Status::Ok();
}

// Milliseconds per unit of a time of magnitude `a` read with the automatic unit: each unit's
// values for the years 1973-5138 lie in one band of three decades.
double AutoScale(double a) { return a < 1e11 ? 1000.0 : a < 1e14 ? 1.0 : a < 1e17 ? 1e-3 : 1e-6; }

// False when the time's milliseconds do not fit in an int64 (llround would give INT64_MIN,
// which silently moves the event to the start of the stream).
bool ScaleToMs(double v, double scale, int64_t* ms) {
  const double x = v * scale;
  if (!(x >= -0x1p63 && x < 0x1p63)) return false;  // also false for NaN and infinities
  *ms = static_cast<int64_t>(std::llround(x));
  return true;
}

bool ToMs(double v, TimeUnit unit, int64_t* ms) { return ScaleToMs(v, unit == TimeUnit::kSeconds ? 1000.0 : 1.0, ms); }

std::string OutOfRange(std::string_view what, std::string_view value) {
  return std::string(what) + " '" + std::string(value) +
         "' is out of range (its milliseconds must fit in a signed 64-bit integer)";
}

// The times of a file read with the automatic unit, converted once all are read: the unit is
// the file's, from its largest magnitude. Chosen per value, a file crossing a band's edge
// (relative microseconds over 28 hours, milliseconds over 3 years) was scaled 1000x
// differently on either side, and its clicks came out of order.
class AutoTimes {
 public:
  // The time of the next event (out[k] for the k-th call), `text` as written on `lineno` (kept
  // as a copy when it is the largest so far: a quoted field's view lives for its line only).
  void Add(double v, std::string_view text, int64_t lineno) {
    scale_ = true;
    values_.push_back(v);
    if (const double a = std::fabs(v); a > max_abs_) {  // (finite: ParseDouble refuses the rest)
      max_abs_ = a;
      max_text_.assign(text);
      max_line_ = lineno;
    }
  }
  // The time of the next event as written, its unit given (ts_ms already set): for the order.
  void Written(double v) { values_.push_back(v); }
  // Sets the events' ts_ms (from Add's values). The largest magnitude is the first to
  // overflow: its line is named.
  // Times finer than a millisecond (µs, ns, fractions of a second) also order the events that
  // share one: `order`, the tie-break, becomes the rank by the time as written, then by `order`
  // (a user's clicks within one ms came out in file order, not time order).
  Status Resolve(std::vector<Interaction>* out, const std::string& path, std::string_view what) const {
    if (values_.empty()) return Status::Ok();
    if (values_.size() != out->size()) return Status::Internal("data: a time for each event, or none");
    const double scale = AutoScale(max_abs_);
    for (size_t k = 0; scale_ && k < values_.size(); ++k) {
      if (!ScaleToMs(values_[k], scale, &(*out)[k].ts_ms)) {
        return LineError(path, max_line_, OutOfRange(what, max_text_));
      }
    }
    // Events equal in both keep equal orders (the rank of the first of them), so whatever
    // compares next (the user) decides between them as before.
    std::vector<size_t> by(values_.size());
    std::iota(by.begin(), by.end(), size_t{0});
    const auto key = [&](size_t k) { return std::make_pair(values_[k], (*out)[k].order); };
    std::sort(by.begin(), by.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
    std::vector<int64_t> rank(by.size());
    for (size_t r = 0; r < by.size(); ++r) {
      rank[by[r]] = r > 0 && key(by[r]) == key(by[r - 1]) ? rank[by[r - 1]] : static_cast<int64_t>(r);
    }
    for (size_t k = 0; k < rank.size(); ++k) (*out)[k].order = rank[k];
    return Status::Ok();
  }

 private:
  std::vector<double> values_;
  bool scale_ = false;  // the unit is to be found (Add), not given (Written)
  double max_abs_ = 0;
  std::string max_text_;
  int64_t max_line_ = 0;
};

// Lines of `text` as ForEachLine counts them, blank lines at the end left out.
int64_t CountLines(const std::string& text) {
  int64_t lines = 0;
  ForEachLine(text, [&](std::string_view line, int64_t lineno) {
    if (!IsBlank(line)) lines = lineno;
    return true;
  });
  return lines;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Milliseconds are below this (31 years): a larger value is another unit or another column.
constexpr double kMaxTimeOffsetMs = 1e12;
// Whether a date-time ParseDateTime reads has a time of day (2016-05-09T10:00, not 2016-05-09
// or 2016-05-09Z): a T, t or space after the YYYY-MM-DD, then a digit.
bool HasTimeOfDay(std::string_view s) {
  s = TrimSpaces(s);
  return s.size() > 11 && (s[10] == 'T' || s[10] == 't' || s[10] == ' ') && s[11] >= '0' && s[11] <= '9';
}

// A missing value's mark as dataset tools write it (pandas, R, SQL dumps), or nothing, any case.
bool IsMissing(std::string_view v) {
  if (v.size() > 4) return false;  // (no allocation for the values that are there)
  static const std::vector<std::string> kMissing = {"", "nan", "null", "none", "na", "n/a", "\\n", "-", "?"};
  return std::find(kMissing.begin(), kMissing.end(), Lower(v)) != kMissing.end();
}

// The user, item and time columns of a TSV (0-based); the column of milliseconds added to a
// date (kTimeOffsetColumn) and the event type's, if the header names them: optional in a row (a
// row without them, or with them empty, read before they were read).
struct TsvColumns {
  size_t user = 0, item = 1, time = 2;
  std::optional<size_t> offset, event;
  size_t needed() const { return std::max({user, item, time}) + 1; }
};

// A value of an optional column, empty when the row has none or one of kMissing's marks.
std::string_view Optional(const std::vector<std::string_view>& f, std::optional<size_t> column) {
  if (!column || *column >= f.size()) return {};
  const std::string_view v = TrimSpaces(f[*column]);
  return IsMissing(v) ? std::string_view() : v;
}

// Columns by the header's names (user_id, item_id, timestamp and their usual spellings), so a
// file with more columns (MovieLens: user, item, rating, timestamp) reads its time, not its
// rating. A header of three columns that does not name all three means user, item, time in that
// order, unless a name it does give says otherwise (item_id first: taken in order, users and
// items were swapped). False when the columns cannot be told.
bool ColumnsFromHeader(const std::vector<std::string_view>& header, TsvColumns* cols) {
  static const std::vector<std::string> kUser = {"user_id",    "userid",  "user",      "sessionid",
                                                 "session_id", "session", "reviewerid"};
  static const std::vector<std::string> kItem = {"item_id", "itemid", "item", "movieid", "movie_id", "asin"};
  static const std::vector<std::string> kTime = {"timestamp", std::string(kTsvMillisecondsColumn), "timestamp_s",
                                                 "ts", "time", "unixreviewtime"};
  // Looked for only when no name above is there: a file that read before reads the same columns
  // (`user_id,item_id,date,timestamp` keeps its timestamp).
  static const std::vector<std::string> kMoreUser = {"visitorid", "visitor_id", "customer_id", "customerid"};
  static const std::vector<std::string> kMoreItem = {"product_id", "productid", "article_id", "articleid"};
  static const std::vector<std::string> kMoreTime = {"event_time", "datetime", "date", "eventdate"};
  auto find = [&](const std::vector<std::string>& names,
                  const std::vector<std::string>& more) -> std::optional<size_t> {
    for (const auto* list : {&names, &more}) {
      for (size_t k = 0; k < header.size(); ++k) {
        const std::string h = Lower(TrimSpaces(header[k]));
        if (std::find(list->begin(), list->end(), h) != list->end()) return k;
      }
    }
    return std::nullopt;
  };
  const auto u = find(kUser, kMoreUser), i = find(kItem, kMoreItem), t = find(kTime, kMoreTime);
  if (u && i && t && *u != *i && *u != *t && *i != *t) {
    *cols = {*u, *i, *t, std::nullopt, std::nullopt};
    const auto apart = [&](std::optional<size_t> k) { return k && *k != *u && *k != *i && *k != *t; };
    if (const auto o = find({std::string(kTimeOffsetColumn)}, {}); apart(o)) cols->offset = o;
    if (const auto e = find({"event", "event_type", "eventtype"}, {}); apart(e) && e != cols->offset) cols->event = e;
    return true;
  }
  *cols = {};
  const bool in_order = (!u || *u == 0) && (!i || *i == 1) && (!t || *t == 2);
  return header.size() <= 3 && in_order;
}

// Neither format has comments: a '#' line was read as a user (or a TSV as per-user lines).
bool IsComment(std::string_view line) {
  const auto t = TrimSpaces(line);
  return !t.empty() && t.front() == '#';
}
Status CommentError(const std::string& path, int64_t lineno) {
  return LineError(path, lineno, "starts with '#': neither format (user<TAB>item<TAB>timestamp rows, per-user "
                                 "lines) takes comment lines; remove it");
}

Result<std::vector<Interaction>> ReadTsv(const std::string& path, const std::string& text,
                                         const ReadOptions& opt) {
  std::vector<Interaction> out;
  // A row a line: grown by doubling, the rows held up to three times themselves while they
  // moved (the peak of reading a large table, over the text itself).
  const auto lines = static_cast<int64_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  out.reserve(static_cast<size_t>(opt.limit > 0 ? std::min(lines, opt.limit) : lines));
  Status error;
  TimeUnit unit = opt.time_unit;
  AutoTimes auto_times;
  TsvColumns cols;
  size_t header_fields = 3;
  bool first = true;
  char sep = 0;  // the first line's (TableSeparator), a tab when it has none
  std::optional<bool> dated;  // the times are date-times (the first row's kind), not numbers
  std::vector<std::string_view> f;
  std::deque<std::string> quoted;  // the line's quoted fields (f's views into them)
  ForEachLine(text, [&](std::string_view line, int64_t lineno) {
    if (IsBlank(line)) return true;
    if (IsComment(line)) {
      error = CommentError(path, lineno);
      return false;
    }
    if (sep == 0) sep = TableSeparator(line);
    if (sep == 0) sep = '\t';
    quoted.clear();
    if (std::string why; !SplitFields(line, sep, &f, &quoted, &why)) {
      error = LineError(path, lineno, why);
      return false;
    }
    // Empty fields at the end (a trailing tab) are not columns, but those the header names are.
    while (f.size() > cols.needed() && TrimSpaces(f.back()).empty()) f.pop_back();
    if (first) {
      first = false;
      if (f.size() < 3) {  // neither a header nor a row (an explicit --format tsv on other lines)
        error = LineError(path, lineno, "expected user<TAB>item<TAB>timestamp, got " + std::to_string(f.size()) +
                                            " fields");
        return false;
      }
      double ignored;
      // The header: a third field that is not a number, nor empty, nor a missing value's mark
      // (a row missing its time is a bad row, not a header to skip; a header may have empty
      // names elsewhere, e.g. pandas' unnamed index column).
      if (!ParseDouble(f[2], &ignored) && !ParseDateTime(f[2], &ignored) && !IsMissing(TrimSpaces(f[2]))) {
        header_fields = f.size();
        if (!ColumnsFromHeader(f, &cols)) {
          error = LineError(path, lineno, "the header has " + std::to_string(f.size()) +
                                              " columns but does not name the user, item and time columns "
                                              "(user_id, item_id, timestamp), or names them out of order "
                                              "without naming all three");
          return false;
        }
        // What `gsau split` writes: milliseconds, which the automatic unit would take as seconds below 1e11.
        // In any case, as the column itself is found.
        if (unit == TimeUnit::kAuto && Lower(TrimSpaces(f[cols.time])) == kTsvMillisecondsColumn) {
          unit = TimeUnit::kMilliseconds;
        }
        return true;
      }
      if (f.size() > 3) {
        // Which column holds the time is a guess without names: MovieLens' third is its rating.
        error = LineError(path, lineno, std::to_string(f.size()) + " " + SeparatedBy(sep) +
                                            " fields and no header line: name the columns in one "
                                            "(user_id, item_id, timestamp), or keep only those three; per-user "
                                            "lines (`uid i1 i2 ...`) must separate their ids with spaces");
        return false;
      }
    }
    // At most as many fields as the header has (three without one): extra fields were ignored,
    // and a per-user file with tabs whose first user had two items read as one (uid, item,
    // time) row per user.
    if (f.size() < cols.needed() || f.size() > header_fields) {
      error = LineError(path, lineno, "expected " + std::to_string(header_fields) +
                                          " " + SeparatedBy(sep) + " fields (user, item, timestamp), got " +
                                          std::to_string(f.size()));
      return false;
    }
    const std::string_view user = f[cols.user], item = f[cols.item], time = f[cols.time];
    double ts;
    const bool number = ParseDouble(time, &ts);
    if (!number && !ParseDateTime(time, &ts)) {
      error = LineError(path, lineno, "timestamp '" + std::string(time) +
                                          "' is not a number nor a date-time (2014-04-07T10:51:09.277Z)");
      return false;
    }
    // One kind per file: the automatic unit scales numbers by the largest of them.
    if (dated == std::nullopt) dated = !number;
    // DIGINETICA's days order a session's clicks by its milliseconds since the session's first
    // (SR-GNN sorts by them too): by the day alone, a third of its clicks followed one they came
    // before, in file order. They order the day's clicks (the tie-break), and the time stays the
    // day: a session's milliseconds run past its day (up to 153 days in the purchases file),
    // and added to it they moved a click months later. Dates only: a time of day (or a number)
    // has its own precision.
    double offset_ms = 0;
    if (const std::string_view written = Optional(f, cols.offset);
        !written.empty() && !number && !HasTimeOfDay(time)) {
      if (!ParseDouble(written, &offset_ms) || offset_ms < 0 || offset_ms >= kMaxTimeOffsetMs) {
        error = LineError(path, lineno, std::string(kTimeOffsetColumn) + " '" + std::string(written) +
                                            "' is not a number of milliseconds, at least 0 and below 1e12");
        return false;
      }
    }
    if (*dated == number) {
      error = LineError(path, lineno, "timestamp '" + std::string(time) + "' is " +
                                          (number ? "a number but the first row's is a date-time"
                                                  : "a date-time but the first row's is a number") +
                                          ": one kind of time per file");
      return false;
    }
    if (user.empty() || item.empty()) {
      error = LineError(path, lineno, "empty user or item id");
      return false;
    }
    // Spaces around an id made 'u1 ' another user than 'u1' (the time's are trimmed): refused,
    // not trimmed, as ingest would keep them too.
    if (TrimSpaces(user) != user || TrimSpaces(item) != item) {
      error = LineError(path, lineno, "spaces around the user or item id ('" + std::string(user) + "', '" +
                                          std::string(item) + "')");
      return false;
    }
    int64_t ts_ms = 0;
    if (*dated) {
      if (!ToMs(ts, TimeUnit::kMilliseconds, &ts_ms)) {  // (years 0000-9999: never)
        error = LineError(path, lineno, OutOfRange("timestamp", time));
        return false;
      }
      auto_times.Written(ts + offset_ms);
    } else if (unit == TimeUnit::kAuto) {
      auto_times.Add(ts, time, lineno);
    } else if (!ToMs(ts, unit, &ts_ms)) {
      error = LineError(path, lineno, OutOfRange("timestamp", time));
      return false;
    } else {
      auto_times.Written(ts);
    }
    out.push_back({std::string(user), std::string(item), ts_ms, static_cast<int64_t>(out.size()), true,
                   std::string(Optional(f, cols.event))});
    return opt.limit <= 0 || static_cast<int64_t>(out.size()) < opt.limit;
  });
  if (!error.ok()) return error;
  GSAU_RETURN_IF_ERROR(auto_times.Resolve(&out, path, "timestamp"));
  return out;
}

Result<std::vector<Interaction>> ReadUserLines(const std::string& path, const std::string& text,
                                               const ReadOptions& opt) {
  std::vector<std::vector<std::string_view>> times_by_line;
  std::string times_text;
  if (!opt.times_path.empty()) {
    GSAU_ASSIGN_OR_RETURN(times_text, ReadFileText(opt.times_path));
    GSAU_RETURN_IF_ERROR(CheckLineEnds(opt.times_path, times_text));
    ForEachLine(times_text, [&](std::string_view line, int64_t) {
      times_by_line.push_back(SplitWs(line));
      return true;
    });
    const int64_t items_lines = CountLines(text);
    const int64_t times_lines = CountLines(times_text);
    if (items_lines != times_lines) {
      return Status::InvalidArgument(path + " has " + std::to_string(items_lines) + " lines but its times file " +
                                     opt.times_path + " has " + std::to_string(times_lines) +
                                     ": the times file needs one line per user line, in the same order");
    }
  }
  std::vector<Interaction> out;
  Status error;
  AutoTimes auto_times;
  size_t index = 0;
  // Where each user's line is: a second line of the same user would be interleaved with the
  // first by position, and a space-separated `user item timestamp` table comes out this way.
  std::unordered_map<std::string_view, int64_t> line_of_user;
  ForEachLine(text, [&](std::string_view line, int64_t lineno) {
    auto f = SplitWs(line);
    if (f.empty()) {
      // Its times line must be blank too: one that was not was dropped without a word.
      if (!opt.times_path.empty() && index < times_by_line.size() && !times_by_line[index].empty()) {
        error = LineError(path, lineno, "blank, but line " + std::to_string(index + 1) + " of " + opt.times_path +
                                            " is not (user id or length differs)");
        return false;
      }
      ++index;
      return true;
    }
    if (IsComment(line)) {
      error = CommentError(path, lineno);
      return false;
    }
    if (auto [it, first] = line_of_user.try_emplace(f[0], lineno); !first) {
      error = LineError(path, lineno, "user '" + std::string(f[0]) + "' already has a line (line " +
                                          std::to_string(it->second) +
                                          "); per-user lines need one line per user (a user<TAB>item<TAB>timestamp "
                                          "table must separate its columns with tabs)");
      return false;
    }
    const std::vector<std::string_view>* times = nullptr;
    if (!opt.times_path.empty()) {
      if (index >= times_by_line.size() || times_by_line[index].size() != f.size() ||
          times_by_line[index][0] != f[0]) {
        error = LineError(path, lineno, "not aligned with line " + std::to_string(index + 1) +
                                            " of " + opt.times_path + " (user id or length differs)");
        return false;
      }
      times = &times_by_line[index];
    }
    ++index;
    for (size_t k = 1; k < f.size(); ++k) {
      int64_t ts = static_cast<int64_t>(k - 1);
      if (times != nullptr) {
        double t;
        if (!ParseDouble((*times)[k], &t)) {
          error = LineError(opt.times_path, lineno, "time '" + std::string((*times)[k]) + "' is not a number");
          return false;
        }
        if (opt.time_unit == TimeUnit::kAuto) {
          auto_times.Add(t, (*times)[k], lineno);
        } else if (!ToMs(t, opt.time_unit, &ts)) {
          error = LineError(opt.times_path, lineno, OutOfRange("time", (*times)[k]));
          return false;
        } else {
          auto_times.Written(t);
        }
      }
      out.push_back({std::string(f[0]), std::string(f[k]), ts, static_cast<int64_t>(k - 1), times != nullptr});
      if (opt.limit > 0 && static_cast<int64_t>(out.size()) >= opt.limit) return false;
    }
    return true;
  });
  if (!error.ok()) return error;
  GSAU_RETURN_IF_ERROR(auto_times.Resolve(&out, opt.times_path, "time"));
  return out;
}

// Without a UTF-8 byte-order mark (Windows editors write one): it would stick to the first user
// id, making that user two, or to the header's first name, hiding it.
std::string WithoutByteOrderMark(std::string text) {
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);
  return text;
}

// The uncompressed size a gzip file's trailer gives (ISIZE: its last member's, modulo 4 GiB),
// when it is at least the file's own size; else 0; at most kMaxGzipRatio times that (a
// truncated file's last bytes are no trailer: a 3 MB one gave 3.4 GB). A hint for reserve():
// the text grown by doubling held up to three times itself while it moved.
size_t GzipSizeHint(const std::string& path) {
  static constexpr uint64_t kMaxGzipRatio = 16;  // text tables compress 4-10x
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const std::streamoff size = in ? static_cast<std::streamoff>(in.tellg()) : 0;
  unsigned char isize[4];
  if (size < 18 || !in.seekg(size - 4) || !in.read(reinterpret_cast<char*>(isize), 4)) return 0;
  const uint64_t hint = isize[0] | (isize[1] << 8) | (isize[2] << 16) | (uint64_t{isize[3]} << 24);
  const auto file = static_cast<uint64_t>(size);
  return hint >= file ? static_cast<size_t>(std::min(hint, file * kMaxGzipRatio)) : 0;
}

// Whether the file starts with gzip's magic bytes: a compressed file without the .gz suffix (a
// download saved as .csv) read as one field per line of binary. Regular files only: a pipe's
// bytes read here would be gone for the reader (<(zcat ...) lost its header).
bool IsGzip(const std::string& path) {
  if (std::error_code ec; !std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[2] = {};
  return in.read(magic, 2) && magic[0] == '\x1f' && magic[1] == '\x8b';
}

}  // namespace

Result<std::string> ReadFileText(const std::string& path) {
  // A directory opens as a stream that reads nothing, which then read as an empty dataset.
  if (std::error_code ec; std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument(path + " is a directory, not a file");
  }
  if (EndsWith(path, ".gz") || IsGzip(path)) {
#if defined(GSAU_HAVE_ZLIB)
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) return Status::NotFound("cannot open " + path);
    std::string out;
    out.reserve(GzipSizeHint(path));
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    // A stream cut short ends like a whole one (gzread returns 0); only gzerror tells them apart
    // (Z_BUF_ERROR), and the cut last line would read as a valid one with a wrong time.
    int err = Z_OK;
    const std::string what = gzerror(f, &err);
    gzclose(f);
    if (n < 0 || err != Z_OK) {
      return Status::Corruption(path + " is truncated or corrupt (" + (what.empty() ? "gzip read failed" : what) +
                                ", after " + std::to_string(out.size()) + " bytes)");
    }
    return WithoutByteOrderMark(std::move(out));
#else
    return Status::Unimplemented(path + ": this build has no zlib; gunzip the file first");
#endif
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open " + path);
  // Into one string of the file's size: through a stringstream the text was held twice over
  // (its buffer, grown by doubling, then the copy str() returns), 2-3x the file at the peak.
  std::string out;
  std::error_code ec;
  if (const auto size = std::filesystem::file_size(path, ec); !ec) out.reserve(static_cast<size_t>(size));
  char buf[1 << 16];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) out.append(buf, static_cast<size_t>(in.gcount()));
  if (in.bad()) return Status::IoError("cannot read " + path);
  return WithoutByteOrderMark(std::move(out));
}

Status WriteInteractionsTsv(const std::string& path, const std::vector<Interaction>& events) {
  // Whole or not at all, and on disk before the rename (gsau split's output: its .tmp was left
  // behind on an error, and nothing was synced).
  return WriteFileAtomically(path, [&](const ByteSink& sink) {
    // An id the reader would take for a quoted field (a leading quote), a comment (a leading
    // '#') or split (a tab) is written quoted, so that it reads back as it was.
    const auto append_id = [](std::string& out, const std::string& id) {
      if (id.empty() || (id.front() != '"' && id.front() != '#' && id.find('\t') == std::string::npos)) {
        out.append(id);
        return;
      }
      out += '"';
      for (const char c : id) out.append(c == '"' ? 2 : 1, c);
      out += '"';
    };
    const bool typed = std::any_of(events.begin(), events.end(), [](const Interaction& e) { return !e.event.empty(); });
    std::string chunk = "user_id\titem_id\t" + std::string(kTsvMillisecondsColumn) + (typed ? "\tevent\n" : "\n");
    for (const auto& e : events) {
      append_id(chunk, e.user_id);
      chunk += '\t';
      append_id(chunk, e.item_id);
      chunk.append(1, '\t').append(std::to_string(e.ts_ms));
      if (typed) {
        chunk += '\t';
        append_id(chunk, e.event.empty() ? std::string(kDefaultEventType) : e.event);
      }
      chunk += '\n';
      if (chunk.size() >= (1 << 16)) {
        sink(chunk.data(), chunk.size());
        chunk.clear();
      }
    }
    sink(chunk.data(), chunk.size());
  });
}

Result<std::vector<Interaction>> ReadInteractions(const std::string& path, const ReadOptions& options) {
  GSAU_ASSIGN_OR_RETURN(std::string text, ReadFileText(path));
  GSAU_RETURN_IF_ERROR(CheckLineEnds(path, text));
  Format format = options.format;
  if (format == Format::kAuto) {
    std::string_view first;
    int64_t first_lineno = 0;
    ForEachLine(text, [&](std::string_view line, int64_t lineno) {
      first = line;
      first_lineno = lineno;
      return IsBlank(line);  // on to the first line that is not blank
    });
    if (IsComment(first)) return CommentError(path, first_lineno);
    const auto tabbed = [](std::string_view line) {
      return line.find('\t') != std::string_view::npos && TableSeparator(line) == '\t';
    };
    format = TableSeparator(first) != 0 ? Format::kTsv : Format::kUserLines;
    if (format == Format::kUserLines) {
      // Told apart by the first line alone, a table whose header is written with spaces (or
      // lacks a field) would be read as per-user lines: times as items.
      Status mixed;
      ForEachLine(text, [&](std::string_view line, int64_t lineno) {
        if (!tabbed(line)) return true;
        mixed = LineError(path, lineno, "tab-separated like user<TAB>item<TAB>timestamp rows, but line " +
                                            std::to_string(first_lineno) +
                                            ", the first, is not: per-user lines separate their ids with spaces, "
                                            "and a table separates every line with tabs, its header too");
        return false;
      });
      GSAU_RETURN_IF_ERROR(mixed);
    }
  }
  if (format == Format::kTsv && !options.times_path.empty()) {
    return Status::InvalidArgument(path + " is a TSV with a time column; a times file (" + options.times_path +
                                   ") goes with per-user lines only");
  }
  GSAU_ASSIGN_OR_RETURN(auto events,
                        format == Format::kTsv ? ReadTsv(path, text, options) : ReadUserLines(path, text, options));
  // Every caller wants interactions; an empty file ran a demo of nothing, and replay waited on
  // Kafka to send none.
  if (events.empty()) {
    // A table of fewer than three columns reads as per-user lines of one field each (a user
    // without items): say what the file looks like, not only that nothing came of it.
    std::string_view first;
    int64_t first_lineno = 0;
    ForEachLine(text, [&](std::string_view line, int64_t lineno) {
      first = line;
      first_lineno = lineno;
      return IsBlank(line);
    });
    if (format == Format::kUserLines && first.find_first_of(" \t") == std::string_view::npos) {
      for (const char sep : {',', ';', '|'}) {
        if (first.find(sep) == std::string_view::npos) continue;
        return LineError(path, first_lineno,
                         std::string("holds no interactions: its lines are one field each, separated by '") + sep +
                             "'; a table needs a user, an item and a time column (with a header naming "
                             "them), or per-user lines separate their ids with spaces");
      }
    }
    return Status::InvalidArgument(path + " holds no interactions");
  }
  return events;
}

void SortByTime(std::vector<Interaction>& events) {
  std::stable_sort(events.begin(), events.end(), [](const Interaction& a, const Interaction& b) {
    if (a.ts_ms != b.ts_ms) return a.ts_ms < b.ts_ms;
    if (a.user_id != b.user_id) return a.user_id < b.user_id;
    return a.order < b.order;
  });
}

}  // namespace gsau::data
