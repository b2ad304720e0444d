// Kafka connection settings shared by every client the project makes (consumer, producers,
// admin), and the rules for passing librdkafka properties through.
//
// Security (security.protocol, sasl.*, ssl.*) and any other librdkafka property pass through
// `properties` untouched. Values of secret properties (passwords, keys, tokens) are never
// logged: use RedactedProperties() for anything printed.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/common/throttle.h"

namespace gsau::kafka {

struct KafkaOptions {
  // Comma-separated host:port list. No default that reaches a network: config/ fills it.
  std::string bootstrap_servers;
  // Sent to the broker; shows up in its logs and quotas.
  std::string client_id = "gsau";
  // librdkafka properties set verbatim, in order, after the project's own defaults (so they
  // can override them), e.g. {"security.protocol","SASL_SSL"}, {"sasl.password","..."}.
  std::vector<std::pair<std::string, std::string>> properties;
};

// Record headers in order. A header's value may be null (std::nullopt), which Kafka keeps apart
// from an empty one.
using Headers = std::vector<std::pair<std::string, std::optional<std::string>>>;

// True for properties whose values are secrets (passwords, private keys, tokens, JAAS).
bool IsSecretProperty(std::string_view name);

// "key=value, key=****" for logs.
std::string RedactedProperties(const KafkaOptions& options);

// Checks that every property is one librdkafka knows and accepts the value; the error names
// the property (with its value redacted when secret).
Status ValidateKafkaOptions(const KafkaOptions& options);

// One of librdkafka's log lines (`level` a syslog level) through gsau's log, naming `who` and
// the line's facility: warnings and errors as warnings (an offset reset, a failed commit, a
// broker away), at most one per `throttle` interval and kind (`who` and `fac`) with the count of
// the ones held back (a broker away repeats them every second); debug lines (only there when
// kafka.properties.debug asks for them) as info; the rest at debug level. For every client the
// project makes (consumer, producers, admin). Thread safety: as `throttle`'s (any thread).
void LogClientLine(std::string_view who, int level, std::string_view fac, std::string_view text,
                   KeyedThrottle& throttle);

}  // namespace gsau::kafka
