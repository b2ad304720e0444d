#include "gsau/kafka/options.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "conf.h"
#include "gsau/common/log.h"

namespace gsau::kafka {

bool IsSecretProperty(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  static constexpr std::array<std::string_view, 6> kMarkers = {"password", "secret", "jaas", "token",
                                                               ".pem", "oauthbearer.config"};
  return std::any_of(kMarkers.begin(), kMarkers.end(),
                     [&](std::string_view m) { return lower.find(m) != std::string::npos; });
}

std::string RedactedProperties(const KafkaOptions& options) {
  std::string out = "bootstrap.servers=" + options.bootstrap_servers + ", client.id=" + options.client_id;
  for (const auto& [k, v] : options.properties) {
    out += ", " + k + "=" + (IsSecretProperty(k) ? std::string("****") : v);
  }
  return out;
}

Status ValidateKafkaOptions(const KafkaOptions& options) {
  if (options.bootstrap_servers.empty()) return Status::InvalidArgument("bootstrap.servers is empty");
  // Every producer of ours is idempotent with acks=all (the publisher, the dead-letter
  // producer, replay), and the properties reach them all.
  auto conf = internal::BuildConf(options, {{"enable.idempotence", "true"}, {"acks", "all"}});
  if (!conf.ok()) return conf.status();
  GSAU_RETURN_IF_ERROR(internal::CheckKeyedPartitioner(**conf));
  return internal::CheckIdempotent(**conf, "gsau's producers");
}

namespace internal {

Status CheckKeyedPartitioner(RdKafka::Conf& conf) {
  std::string partitioner;
  if (conf.get("partitioner", partitioner) == RdKafka::Conf::CONF_OK && partitioner == "random") {
    return Status::InvalidArgument(
        "kafka property 'partitioner' = random places a key's records on any partition: an id's embedding "
        "records would lie on several, where compaction keeps a stale one in each, and a user's clicks would "
        "lose their order; use murmur2_random (the default) or consistent_random");
  }
  return Status::Ok();
}

Status CheckIdempotent(RdKafka::Conf& conf, const std::string& who) {
  // The properties come after our defaults, and librdkafka takes enable.idempotence=false with
  // acks=1 without a word: a producer would then lose acknowledged records (a leader failing
  // over) or duplicate and reorder them, which our producers promise never happens.
  std::string idempotence, acks, transactional_id;
  conf.get("enable.idempotence", idempotence);
  conf.get("acks", acks);
  // A transactional producer refuses every record sent outside a transaction (ERR__STATE): the
  // publisher and the dead-letter path would retry for ever.
  if (conf.get("transactional.id", transactional_id) == RdKafka::Conf::CONF_OK && !transactional_id.empty()) {
    return Status::InvalidArgument("kafka.properties set transactional.id: " + who +
                                   " must be idempotent, not transactional (librdkafka refuses a record sent outside "
                                   "a transaction, and ours send none in one); remove it");
  }
  if (idempotence == "true" && (acks == "-1" || acks == "all")) return Status::Ok();
  return Status::InvalidArgument("kafka.properties result in enable.idempotence=" + idempotence + " and acks=" +
                                 (acks == "-1" ? "all" : acks) + ": " + who +
                                 " must run with enable.idempotence=true and acks=all (records must not be lost, "
                                 "duplicated or reordered); remove those properties");
}

namespace {

// An unknown name may be a misspelt secret ("sasl.pasword"), whose value must not reach the log:
// only a known, non-secret property's value is shown.
std::string PropertyError(const std::string& name, const std::string& value, bool unknown, const std::string& err) {
  if (unknown) return "kafka property '" + name + "': " + err;
  return "kafka property '" + name + "' = '" + (IsSecretProperty(name) ? "****" : value) + "': " + err;
}

void AdminLogLine(const rd_kafka_t* rk, int level, const char* fac, const char* text) {
  // One process-wide window per client handle and kind: a handle's lines are not hidden by an
  // earlier handle's.
  static KeyedThrottle throttle{std::chrono::seconds(5)};
  LogClientLine(std::string("kafka admin ") + rd_kafka_name(rk), level, fac, text, throttle);
}

}  // namespace

}  // namespace internal

void LogClientLine(std::string_view who, int level, std::string_view fac, std::string_view text,
                   KeyedThrottle& throttle) {
  if (level <= 4) {  // LOG_WARNING and worse
    const std::string kind = std::string(who) + '\0' + std::string(fac);
    if (const int64_t n = throttle.Due(kind)) GSAU_LOG_WARN("{}: librdkafka ({}x): {}: {}", who, n, fac, text);
  } else if (level >= 7) {
    GSAU_LOG_INFO("{}: librdkafka {}: {}", who, fac, text);
  } else {
    GSAU_LOG_DEBUG("{}: librdkafka {}: {}", who, fac, text);
  }
}

namespace internal {

Result<std::unique_ptr<RdKafka::Conf>> BuildConf(const KafkaOptions& kafka, const Props& defaults) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  auto set = [&](const std::string& k, const std::string& v) -> Status {
    if (const auto r = conf->set(k, v, err); r != RdKafka::Conf::CONF_OK) {
      return Status::InvalidArgument(PropertyError(k, v, r == RdKafka::Conf::CONF_UNKNOWN, err));
    }
    return Status::Ok();
  };
  GSAU_RETURN_IF_ERROR(set("bootstrap.servers", kafka.bootstrap_servers));
  GSAU_RETURN_IF_ERROR(set("client.id", kafka.client_id));
  for (const auto& [k, v] : defaults) GSAU_RETURN_IF_ERROR(set(k, v));
  for (const auto& [k, v] : kafka.properties) GSAU_RETURN_IF_ERROR(set(k, v));
  return conf;
}

Result<rd_kafka_conf_t*> BuildCConf(const KafkaOptions& kafka, const Props& defaults) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  auto set = [&](const std::string& k, const std::string& v) -> Status {
    if (const auto r = rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)); r != RD_KAFKA_CONF_OK) {
      return Status::InvalidArgument(PropertyError(k, v, r == RD_KAFKA_CONF_UNKNOWN, err));
    }
    return Status::Ok();
  };
  Status s = set("bootstrap.servers", kafka.bootstrap_servers);
  if (s.ok()) s = set("client.id", kafka.client_id);
  for (const auto& [k, v] : defaults) {
    if (s.ok()) s = set(k, v);
  }
  for (const auto& [k, v] : kafka.properties) {
    if (s.ok()) s = set(k, v);
  }
  if (!s.ok()) {
    rd_kafka_conf_destroy(conf);
    return s;
  }
  rd_kafka_conf_set_log_cb(conf, AdminLogLine);
  return conf;
}

}  // namespace internal
}  // namespace gsau::kafka
