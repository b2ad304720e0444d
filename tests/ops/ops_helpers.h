// Helpers of the operations tests: the PromQL of deploy/ (dashboard and alert rules) taken apart
// into the series it selects, the Prometheus text exposition parsed, and Prometheus's HTTP API.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gsau::testing {

struct LabelMatcher {
  std::string label;
  std::string op;  // =, !=, =~ or !~
  std::string value;
  friend bool operator==(const LabelMatcher&, const LabelMatcher&) = default;
};

// One vector selector of an expression: `metric{label="value", ...}`.
struct Selector {
  std::string metric;
  std::vector<LabelMatcher> matchers;
  friend bool operator==(const Selector&, const Selector&) = default;
};

// The vector selectors of a PromQL expression, in order. A small lexer, not a parser: it tells
// string literals, label matcher blocks, range and subquery brackets, numbers and durations,
// function calls, aggregation operators, the label lists of by/without/on/ignoring/group_left/
// group_right, keywords and Grafana variables ($__rate_interval) apart; any other identifier is a
// metric name. Enough for every expression of this repository's deploy/ files (tested on each
// construct they use).
std::vector<Selector> Selectors(const std::string& expr);

// One sample line of the Prometheus text exposition format.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Every sample of an exposition (comments and blank lines skipped).
std::vector<Sample> ParseExposition(const std::string& text);

// Metric family name -> type, from the `# TYPE name type` lines of an exposition.
std::map<std::string, std::string> ExpositionTypes(const std::string& text);

// An expression of a deploy file and where it is, for failure messages.
struct Expression {
  std::string where;  // e.g. "dashboard panel 'Ingest rate' target A", "alert GsauLearnerStalled"
  std::string expr;
};

// The `expr` of every target of every panel (nested rows included) of a Grafana dashboard.
std::vector<Expression> DashboardExpressions(const nlohmann::json& dashboard);

// The `expr` of every rule (alerting and recording) of a Prometheus rule file.
std::vector<Expression> RuleExpressions(const std::string& rule_file);

// The whole of a file; throws when it cannot be read (tests only).
std::string ReadFile(const std::string& path);

// `query` percent-encoded for a URL's query string.
std::string UrlEncode(const std::string& query);

// The body of GET http://127.0.0.1:port/path (an HTTP/1.0 request); empty when there is no answer.
std::string HttpBody(int port, const std::string& path);

// The JSON body of GET http://127.0.0.1:port/path (an HTTP/1.0 request; Prometheus answers it);
// nullopt when there is no answer or the body is not JSON.
std::optional<nlohmann::json> HttpGetJson(int port, const std::string& path);

}  // namespace gsau::testing
