#include "ops_helpers.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "process.h"

namespace gsau::testing {
namespace {

bool IsIdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Keywords followed by a parenthesised list of label names.
const std::set<std::string> kLabelListKeywords = {"by", "without", "on", "ignoring", "group_left", "group_right"};
const std::set<std::string> kAggregations = {"sum",    "min",    "max",          "avg",     "group",    "stddev",
                                             "stdvar", "count",  "count_values", "bottomk", "topk",     "quantile",
                                             "limitk", "limit_ratio"};
const std::set<std::string> kKeywords = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "start", "end"};

size_t SkipSpace(const std::string& s, size_t i) {
  while (i < s.size()) {
    if (std::isspace(static_cast<unsigned char>(s[i]))) {
      ++i;
    } else if (s[i] == '#') {  // a comment runs to the end of the line
      while (i < s.size() && s[i] != '\n') ++i;
    } else {
      break;
    }
  }
  return i;
}

// The string literal starting at s[i] (a quote); i is left past its closing quote.
std::string ReadString(const std::string& s, size_t& i) {
  const char quote = s[i++];
  std::string out;
  while (i < s.size() && s[i] != quote) {
    if (s[i] == '\\' && quote != '`' && i + 1 < s.size()) {
      const char e = s[++i];
      out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
    } else {
      out += s[i];
    }
    ++i;
  }
  if (i >= s.size()) throw std::invalid_argument("unterminated string in: " + s);
  ++i;
  return out;
}

// Skips from s[i] == open to past its matching close.
void SkipBalanced(const std::string& s, size_t& i, char open, char close) {
  int depth = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      ReadString(s, i);
      continue;
    }
    ++i;
    if (c == open) ++depth;
    if (c == close && --depth == 0) return;
  }
  throw std::invalid_argument(std::string("unbalanced '") + open + "' in: " + s);
}

// The matchers of the block starting at s[i] == '{'; i is left past the '}'.
std::vector<LabelMatcher> ReadMatchers(const std::string& s, size_t& i) {
  std::vector<LabelMatcher> out;
  ++i;
  while (true) {
    i = SkipSpace(s, i);
    if (i >= s.size()) throw std::invalid_argument("unterminated matchers in: " + s);
    if (s[i] == '}') {
      ++i;
      return out;
    }
    if (s[i] == ',') {
      ++i;
      continue;
    }
    LabelMatcher m;
    if (s[i] == '"') {
      m.label = ReadString(s, i);
    } else {
      while (i < s.size() && IsIdentChar(s[i])) m.label += s[i++];
    }
    i = SkipSpace(s, i);
    while (i < s.size() && (s[i] == '=' || s[i] == '!' || s[i] == '~')) m.op += s[i++];
    i = SkipSpace(s, i);
    if (m.label.empty() || m.op.empty() || i >= s.size() || (s[i] != '"' && s[i] != '\'' && s[i] != '`')) {
      throw std::invalid_argument("bad label matcher at " + std::to_string(i) + " in: " + s);
    }
    m.value = ReadString(s, i);
    out.push_back(std::move(m));
  }
}

}  // namespace

std::vector<Selector> Selectors(const std::string& s) {
  std::vector<Selector> out;
  size_t i = 0;
  while ((i = SkipSpace(s, i)) < s.size()) {
    const char c = s[i];
    if (c == '"' || c == '\'' || c == '`') {
      ReadString(s, i);
    } else if (c == '[') {  // a range or a subquery: durations and Grafana variables only
      SkipBalanced(s, i, '[', ']');
    } else if (c == '{') {  // a selector by matchers alone: {__name__="x", ...}
      Selector sel;
      sel.matchers = ReadMatchers(s, i);
      for (const auto& m : sel.matchers) {
        if (m.label == "__name__" && m.op == "=") sel.metric = m.value;
      }
      out.push_back(std::move(sel));
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {  // 0.5, 1e-9, 0x1f, 15m, 1h30m
      ++i;
      while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '.' ||
                              ((s[i] == '-' || s[i] == '+') && (s[i - 1] == 'e' || s[i - 1] == 'E')))) {
        ++i;
      }
    } else if (c == '$') {  // a Grafana variable
      ++i;
      while (i < s.size() && IsIdentChar(s[i])) ++i;
    } else if (IsIdentStart(c)) {
      std::string ident;
      while (i < s.size() && IsIdentChar(s[i])) ident += s[i++];
      const size_t next = SkipSpace(s, i);
      const std::string word = Lower(ident);
      if (kLabelListKeywords.count(word) && next < s.size() && s[next] == '(') {
        i = next;
        SkipBalanced(s, i, '(', ')');
      } else if (kKeywords.count(word) || kLabelListKeywords.count(word) || kAggregations.count(word) ||
                 (next < s.size() && s[next] == '(')) {
        // a keyword, an aggregation or a function: its arguments are read as they come
      } else {
        Selector sel{ident, {}};
        if (next < s.size() && s[next] == '{') {
          i = next;
          sel.matchers = ReadMatchers(s, i);
        }
        out.push_back(std::move(sel));
      }
    } else {
      ++i;  // operators, parentheses, commas, @
    }
  }
  return out;
}

std::vector<Sample> ParseExposition(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    Sample sample;
    size_t i = 0;
    while (i < line.size() && IsIdentChar(line[i])) sample.name += line[i++];
    if (i < line.size() && line[i] == '{') {
      for (const auto& m : ReadMatchers(line, i)) sample.labels[m.label] = m.value;
    }
    std::istringstream rest(line.substr(i));
    std::string value;
    rest >> value;
    if (sample.name.empty() || value.empty()) throw std::invalid_argument("bad exposition line: " + line);
    sample.value = value == "+Inf" ? 1e308 : value == "-Inf" ? -1e308 : std::stod(value);
    out.push_back(std::move(sample));
  }
  return out;
}

std::map<std::string, std::string> ExpositionTypes(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    std::string hash, kind, name, type;
    if (f >> hash >> kind >> name >> type && hash == "#" && kind == "TYPE") out[name] = type;
  }
  return out;
}

namespace {

void CollectTargets(const nlohmann::json& node, std::vector<Expression>* out) {
  if (node.is_object()) {
    if (node.contains("targets") && node["targets"].is_array()) {
      const std::string title = node.value("title", std::string("(untitled)"));
      for (const auto& t : node["targets"]) {
        if (t.contains("expr")) {
          out->push_back({"dashboard panel '" + title + "' target " + t.value("refId", std::string("?")),
                          t["expr"].get<std::string>()});
        }
      }
    }
    if (node.contains("panels")) CollectTargets(node["panels"], out);
  } else if (node.is_array()) {
    for (const auto& e : node) CollectTargets(e, out);
  }
}

}  // namespace

std::vector<Expression> DashboardExpressions(const nlohmann::json& dashboard) {
  std::vector<Expression> out;
  CollectTargets(dashboard, &out);
  return out;
}

std::vector<Expression> RuleExpressions(const std::string& rule_file) {
  std::vector<Expression> out;
  const YAML::Node root = YAML::LoadFile(rule_file);
  for (const auto& group : root["groups"]) {
    for (const auto& rule : group["rules"]) {
      const std::string where =
          rule["alert"] ? "alert " + rule["alert"].as<std::string>() : "record " + rule["record"].as<std::string>();
      out.push_back({where, rule["expr"].as<std::string>()});
    }
  }
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string UrlEncode(const std::string& query) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : query) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string HttpBody(int port, const std::string& path) {
  const std::string response = HttpGet(port, path);
  const auto body = response.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : response.substr(body + 4);
}

std::optional<nlohmann::json> HttpGetJson(int port, const std::string& path) {
  const std::string body = HttpBody(port, path);
  if (body.empty()) return std::nullopt;
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

}  // namespace gsau::testing
