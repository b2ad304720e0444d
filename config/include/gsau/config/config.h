// Config: the one typed configuration of gsau, and the only place that reads files,
// environment variables and flags.
//
// Sources, later ones winning:  defaults  <  YAML file (--config)  <  GSAU_* environment
// variables  <  flags (--set key=value).
//  - YAML keys are the dotted names below, nested (`ingest: {batch_max_events: 500}`).
//  - Environment: GSAU_ + the key upper-cased with '.' -> '_' (GSAU_INGEST_BATCH_MAX_EVENTS).
//    librdkafka properties: GSAU_KAFKA_PROPERTY_SASL_PASSWORD -> kafka.properties."sasl.password"
//    (lower-cased, '_' -> '.').
//  - YAML `kafka.properties` is a map passed verbatim to librdkafka (security.protocol,
//    sasl.*, ssl.* ...). Secret values never appear in logs (Redacted()).
// An unknown key, a value of the wrong type or out of range, or a missing file is an error
// naming the field and where its value came from; start-up stops there.
//
// Modules never include this header: app/ calls the To*Options() functions to build each
// module's own Options struct.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/ingest/ingestor.h"
#include "gsau/kafka/options.h"
#include "gsau/metrics/metrics.h"
#include "gsau/publisher/publisher.h"
#include "gsau/state/state_options.h"

namespace gsau::config {

struct KafkaSection {
  std::string bootstrap_servers;  // empty = the embedded default (gsau demo / run without a broker)
  std::string client_id = "gsau";
  std::vector<std::pair<std::string, std::string>> properties;
};

struct TopicsSection {
  std::string clicks = "clicks";
  std::string dead_letter = "clicks.dlq";
  std::string user_embeddings = "gsau.user-embeddings";
  std::string item_embeddings = "gsau.item-embeddings";
  int partitions = 4;  // used when gsau creates a missing topic
  int replication_factor = -1;  // likewise; -1: the brokers' default.replication.factor
};

struct IngestSection {
  std::string group_id = "gsau-ingest";
  int batch_max_events = 1000;
  int batch_max_wait_ms = 100;
  int queue_capacity = 100000;
  std::vector<std::string> accepted_event_types;  // empty = every type
  int session_timeout_ms = 10000;
  std::string group_instance_id;  // empty = dynamic membership
  int max_value_bytes = 65536;
  int min_event_time_s = 100000000;  // 1973-03-03: an earlier ts is taken to be in seconds
  int max_event_time_ahead_s = 86400;  // a later ts (than the clock) is a bad time; 0: no limit
};

struct StateSection {
  std::string path = "gsau-data/state";
  int session_length = 50;
  int block_cache_mb = 256;
  int write_buffer_mb = 64;
  int min_free_disk_mb = 256;
  int changelog_retention_batches = 100000;
  std::string compression = "lz4";  // none | lz4 | zstd
  bool sync = false;
};

struct LearnerSection {
  std::string device = "auto";  // auto | cpu | cuda
  int threads = 0;              // 0 = every core but one (ingest, publisher), at least 1
  int embedding_dim = 64;
  int batch_size = 512;
  double learning_rate = 2e-3;  // online; docs/results/continual (run 7); gsau train keeps 1e-3
  double gamma = 0.1;
  double replay_ratio = 0.5;
  int replay_capacity = 200000;
  double replay_recent_fraction = 0.5;
  int replay_recent_capacity = 50000;
  std::string checkpoint_dir = "gsau-data/checkpoints";
  int checkpoint_interval_s = 300;
  int checkpoint_keep = 3;
  int idle_train_s = 600;  // issue 6: "keep training on replay for up to 10 minutes after the last event"
  int max_failed_steps = 5;  // in a row; each failed batch's fresh samples are skipped
  std::string prequential_csv = "gsau-data/prequential.csv";  // empty = none
  int prequential_interval_s = 10;
};

struct PublisherSection {
  std::string format = "json";  // json | binary
  int interval_ms = 50;         // user embeddings
  int item_interval_ms = 1000;  // item embeddings
  double item_change_threshold = 0.01;  // relative L2 move since the item's last record
  int stop_flush_ms = 20000;  // the stop's wait for the last deliveries
  int user_refresh_s = 3600;  // every user again this often while training goes on; 0 = never
};

struct MetricsSection {
  std::string listen_address = "127.0.0.1:9464";
};

struct Config {
  KafkaSection kafka;
  TopicsSection topics;
  IngestSection ingest;
  StateSection state;
  LearnerSection learner;
  PublisherSection publisher;
  MetricsSection metrics;

  // "key = value" lines of every field, secrets as ****.
  std::string Redacted() const;
};

// A command's own flag for one field (gsau run --state DIR): applied last, named in errors.
struct FlagValue {
  std::string key;    // the field, e.g. "state.path"
  std::string value;
  std::string flag;   // e.g. "--state"
};

struct LoadInput {
  std::string config_file;                                  // empty = none
  std::vector<std::string> overrides;                       // "key=value", from --set
  std::vector<std::pair<std::string, std::string>> env;     // the environment; see Environment()
  std::vector<FlagValue> flags;                             // over all of the above
  // Which of the paths a command creates and writes are checked against the file system (a file
  // where a directory belongs): kAll: state.path, learner.checkpoint_dir and
  // learner.prequential_csv's folder (gsau run); kState: state.path (gsau ingest); kNone: the
  // commands that ignore these paths or put their own in their place.
  enum class DirectoryChecks { kNone, kState, kAll };
  DirectoryChecks directory_checks = DirectoryChecks::kAll;
};

// The process environment as (name, value) pairs.
std::vector<std::pair<std::string, std::string>> Environment();

// Builds and validates a Config: file < environment < --set < flags. InvalidArgument/NotFound
// errors name the field (or file) and where its value came from.
Result<Config> Load(const LoadInput& input);

// Environment variables of input.env named like a field (GSAU_<SECTION>_...) that match none, as
// "NAME (did you mean OTHER?)" lines: probably a typo that Load leaves unused. Not an error, as
// other tools' variables may share the prefix.
std::vector<std::string> UnknownEnvironment(const LoadInput& input);

// Checks every field's rule; the error names the first field that breaks one.
Status Validate(const Config& config);

// One documented field: for --help-config and docs/CONFIG.md.
struct FieldDoc {
  std::string key;
  std::string type;
  std::string unit;
  std::string default_value;
  std::string description;
  std::string range;  // "[min, max]" of a number; "" when any value of the type is taken
};
std::vector<FieldDoc> Fields();
// Fields() as a Markdown table (docs/CONFIG.md is this text; a test keeps them equal).
std::string FieldsMarkdown();

// Module options, built from a validated Config.
kafka::KafkaOptions ToKafkaOptions(const Config& config);
metrics::MetricsOptions ToMetricsOptions(const Config& config);
state::StateOptions ToStateOptions(const Config& config);
ingest::IngestOptions ToIngestOptions(const Config& config);
publisher::PublisherOptions ToPublisherOptions(const Config& config);

}  // namespace gsau::config
