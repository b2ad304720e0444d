#include "gsau/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <tuple>

extern char** environ;

namespace gsau::config {
namespace {

// One field of Config: how to parse, print, check and document it. The table below is the
// single source of truth for YAML keys, environment names, --set keys and the docs.
struct Field {
  std::string key;
  std::string type;
  std::string unit;
  std::string description;
  std::function<Status(Config&, const std::string&)> set;
  std::function<std::string(const Config&)> get;
  std::function<std::string(const Config&)> check;  // "" when valid, else the problem
  std::string range = {};  // the values `check` takes, for the docs ("" when it says no range)
};

Status ParseInt(const std::string& text, int* out) {
  int64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size() || v < INT32_MIN || v > INT32_MAX) {
    return Status::InvalidArgument("expected an integer, got '" + text + "'");
  }
  *out = static_cast<int>(v);
  return Status::Ok();
}

Status ParseDouble(const std::string& text, double* out) {
  double v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size() || !std::isfinite(v)) {
    return Status::InvalidArgument("expected a number, got '" + text + "'");
  }
  *out = v;
  return Status::Ok();
}

std::string FormatDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

std::string Trimmed(std::string s) {
  s.erase(0, s.find_first_not_of(" \t"));
  s.erase(s.find_last_not_of(" \t") + 1);
  return s;
}

// "a,b", or the YAML flow list a user writes in a file, "[a, b]" or "['a', \"b\"]", in an
// environment variable or a --set (it gave the types "[a" and "b]", matching nothing).
std::vector<std::string> SplitList(const std::string& given) {
  std::string text = Trimmed(given);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string item = Trimmed(text.substr(start, comma - start));
    if (item.size() >= 2 && (item.front() == '"' || item.front() == '\'') && item.back() == item.front()) {
      item = item.substr(1, item.size() - 2);
    }
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

template <typename S>
using Member = S Config::*;

template <typename S>
Field IntField(std::string key, Member<S> sec, int S::*m, std::string unit, std::string desc, int min, int max) {
  Field f{std::move(key),
          "int",
          std::move(unit),
          std::move(desc),
          [=](Config& c, const std::string& t) { return ParseInt(t, &((c.*sec).*m)); },
          [=](const Config& c) { return std::to_string((c.*sec).*m); },
          [=](const Config& c) -> std::string {
            const int v = (c.*sec).*m;
            if (v < min || v > max) {
              return "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                     std::to_string(v);
            }
            return "";
          }};
  f.range = "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
  return f;
}

template <typename S>
Field DoubleField(std::string key, Member<S> sec, double S::*m, std::string unit, std::string desc, double min,
                  double max) {
  Field f{std::move(key),
          "float",
          std::move(unit),
          std::move(desc),
          [=](Config& c, const std::string& t) { return ParseDouble(t, &((c.*sec).*m)); },
          [=](const Config& c) { return FormatDouble((c.*sec).*m); },
          [=](const Config& c) -> std::string {
            const double v = (c.*sec).*m;
            if (v < min || v > max) {
              return "must be in [" + FormatDouble(min) + ", " + FormatDouble(max) + "], got " + FormatDouble(v);
            }
            return "";
          }};
  f.range = "[" + FormatDouble(min) + ", " + FormatDouble(max) + "]";
  return f;
}

// `f` with the range the docs give it, for a field that a rule of ValidateFrom narrows further.
Field WithRange(Field f, std::string range) {
  f.range = std::move(range);
  return f;
}

// `allowed` empty = any string; `non_empty` rejects "".
template <typename S>
Field StringField(std::string key, Member<S> sec, std::string S::*m, std::string desc,
                  std::vector<std::string> allowed = {}, bool non_empty = false) {
  std::string range;  // the docs' list of the values taken: "string in {a, b}"
  for (const auto& a : allowed) range += (range.empty() ? "{" : ", ") + a;
  if (!range.empty()) range += "}";
  Field f{std::move(key),
          "string",
          "",
          std::move(desc),
          [=](Config& c, const std::string& t) {
            (c.*sec).*m = t;
            return Status::Ok();
          },
          [=](const Config& c) { return (c.*sec).*m; },
          [=](const Config& c) -> std::string {
            const std::string& v = (c.*sec).*m;
            if (non_empty && v.empty()) return "must not be empty";
            if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
              std::string list;
              for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
              return "must be one of " + list + ", got '" + v + "'";
            }
            return "";
          }};
  return WithRange(std::move(f), std::move(range));
}

template <typename S>
Field BoolField(std::string key, Member<S> sec, bool S::*m, std::string desc) {
  return Field{std::move(key),
               "bool",
               "",
               std::move(desc),
               [=](Config& c, const std::string& text) {
                 std::string t = text;  // YAML's True and TRUE too
                 for (auto& ch : t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                 if (t == "true" || t == "1" || t == "yes" || t == "on") {
                   (c.*sec).*m = true;
                 } else if (t == "false" || t == "0" || t == "no" || t == "off") {
                   (c.*sec).*m = false;
                 } else {
                   return Status::InvalidArgument("expected true or false (or yes/no, on/off, 1/0), got '" + text +
                                                  "'");
                 }
                 return Status::Ok();
               },
               [=](const Config& c) { return std::string((c.*sec).*m ? "true" : "false"); },
               [](const Config&) { return std::string(); }};
}

template <typename S>
Field ListField(std::string key, Member<S> sec, std::vector<std::string> S::*m, std::string desc) {
  return Field{std::move(key),
               "list of strings",
               "",
               std::move(desc),
               [=](Config& c, const std::string& t) {
                 (c.*sec).*m = SplitList(t);
                 return Status::Ok();
               },
               [=](const Config& c) {
                 std::string out;
                 for (const auto& s : (c.*sec).*m) out += (out.empty() ? "" : ",") + s;
                 return out;
               },
               [](const Config&) { return std::string(); }};
}

const std::vector<Field>& Table() {
  using C = Config;
  static const std::vector<Field> table = {
      StringField("kafka.bootstrap_servers", &C::kafka, &KafkaSection::bootstrap_servers,
                  "Kafka brokers, host:port[,host:port]. Empty: gsau demo starts an embedded broker."),
      StringField("kafka.client_id", &C::kafka, &KafkaSection::client_id, "client.id sent to the brokers.", {},
                  true),
      StringField("topics.clicks", &C::topics, &TopicsSection::clicks, "Topic of incoming click events.", {}, true),
      StringField("topics.dead_letter", &C::topics, &TopicsSection::dead_letter,
                  "Dead-letter topic for bad events (with gsau.error.* headers).", {}, true),
      StringField("topics.user_embeddings", &C::topics, &TopicsSection::user_embeddings,
                  "Compacted topic of user embeddings.", {}, true),
      StringField("topics.item_embeddings", &C::topics, &TopicsSection::item_embeddings,
                  "Compacted topic of item embeddings.", {}, true),
      IntField("topics.partitions", &C::topics, &TopicsSection::partitions, "partitions",
               "Partitions of a topic that gsau creates because it is missing.", 1, 10000),
      IntField("topics.replication_factor", &C::topics, &TopicsSection::replication_factor, "replicas",
               "Replicas of a topic that gsau creates because it is missing (the dead-letter and embedding "
               "topics; demo's clicks topic on a real broker); -1 takes the brokers' default.replication.factor, "
               "which is 1 unless set there: a broker lost then loses the topic's records. Not 0.",
               -1, 32767),
      StringField("ingest.group_id", &C::ingest, &IngestSection::group_id, "Kafka consumer group of ingest.", {},
                  true),
      IntField("ingest.batch_max_events", &C::ingest, &IngestSection::batch_max_events, "events",
               "Largest micro-batch applied to the state in one atomic write.", 1, 1000000),
      IntField("ingest.batch_max_wait_ms", &C::ingest, &IngestSection::batch_max_wait_ms, "ms",
               "Longest a micro-batch stays open while records keep arriving (it is applied as soon as no fetched record is left).", 1, 60000),
      IntField("ingest.queue_capacity", &C::ingest, &IngestSection::queue_capacity, "events",
               "Applied events queued for the learner before ingest pauses its partitions (at least "
               "ingest.batch_max_events); it resumes when the learner has taken half of them.", 1, 100000000),
      ListField("ingest.accepted_event_types", &C::ingest, &IngestSection::accepted_event_types,
                "Event types kept (comma-separated, matched exactly: case counts; an event without a type is a "
                "click); the others are skipped, counted in gsau_ingest_events_skipped_total, their offsets taken. "
                "Empty keeps every type."),
      IntField("ingest.session_timeout_ms", &C::ingest, &IngestSection::session_timeout_ms, "ms",
               "Consumer group session timeout: how soon a dead ingest's partitions move to another (Kafka brokers "
               "refuse less than their group.min.session.timeout.ms, 6000 by default).", 6000,
               300000),
      StringField("ingest.group_instance_id", &C::ingest, &IngestSection::group_instance_id,
                  "Static group membership id (group.instance.id): a restarted ingest gets its partitions back "
                  "without a rebalance. Empty: dynamic membership."),
      IntField("ingest.max_value_bytes", &C::ingest, &IngestSection::max_value_bytes, "bytes",
               "Click records larger than this are dead-lettered unparsed.", 64, 16 << 20),
      IntField("ingest.max_event_time_ahead_s", &C::ingest, &IngestSection::max_event_time_ahead_s, "s",
               "Latest event time accepted, seconds ahead of this machine's clock. A click whose ts or message "
               "timestamp is later is dead-lettered as bad_time (a producer's clock ahead: it would sort after every "
               "real click and pin its user's event_time_ms). 0: no limit but the year 2100.",
               0, 2000000000),
      IntField("ingest.min_event_time_s", &C::ingest, &IngestSection::min_event_time_s, "s",
               "Earliest event time accepted, seconds since the epoch (100000000 = 1973-03-03). A click whose ts "
               "(milliseconds) or message timestamp is earlier is dead-lettered as bad_time: such a value is almost "
               "always a time in seconds. 0 accepts any time from the epoch on (e.g. a dataset whose times are "
               "sequence numbers).",
               0, 2000000000),
      StringField("state.path", &C::state, &StateSection::path, "Directory of the RocksDB state store.", {}, true),
      IntField("state.session_length", &C::state, &StateSection::session_length, "items",
               "Clicks kept per user session (the SASRec input is the last 50). Changed between runs, the next run "
               "trims every session to it at start-up (lowering it drops clicks for good).",
               50, 100000),
      IntField("state.block_cache_mb", &C::state, &StateSection::block_cache_mb, "MiB",
               "RocksDB block cache shared by the state's column families.", 1, 1 << 20),
      IntField("state.write_buffer_mb", &C::state, &StateSection::write_buffer_mb, "MiB",
               "Memtable size of each large column family (more: fewer flushes, longer WAL replay).", 1, 1 << 16),
      IntField("state.min_free_disk_mb", &C::state, &StateSection::min_free_disk_mb, "MiB",
               "Free disk space the state keeps: below it, ingest holds its batch and stops consuming until space "
               "returns, and start-up fails below it or 64 MiB, whichever is lower (0: no check).",
               0, 1 << 24),
      IntField("state.changelog_retention_batches", &C::state, &StateSection::changelog_retention_batches,
               "batches",
               "Batches the state's change feed keeps: a restart catches the learner up from the checkpoint's batch "
               "through it (further back, it retrains on the whole graph and publishes every user again). The "
               "learner checkpoints early when half of it has gone by since its last checkpoint.",
               1000, 1 << 30),
      StringField("state.compression", &C::state, &StateSection::compression,
                  "Compression of SST levels >= 2.", {"none", "lz4", "zstd"}),
      BoolField("state.sync", &C::state, &StateSection::sync,
                "fsync the WAL on every batch: survives power loss, costs one fsync per batch."),
      StringField("learner.device", &C::learner, &LearnerSection::device,
                  "auto picks CUDA when LibTorch sees a GPU, else CPU.", {"auto", "cpu", "cuda"}),
      IntField("learner.threads", &C::learner, &LearnerSection::threads, "threads",
               "CPU threads of the learner (LibTorch); 0 = every core the process may use (affinity, cgroup CPU quota) but one, "
               "which ingest and the publisher need (at least 1).", 0, 1024),
      WithRange(IntField("learner.embedding_dim", &C::learner, &LearnerSection::embedding_dim, "floats",
                         "Embedding width d of users and items (even: two attention heads split it).", 2, 4096),
                "[2, 4096], even"),
      IntField("learner.batch_size", &C::learner, &LearnerSection::batch_size, "samples",
               "Graph pairs and sequence samples per training step (each).", 1, 1000000),
      DoubleField("learner.learning_rate", &C::learner, &LearnerSection::learning_rate, "",
                  "Adam learning rate of the online learner (0.002 kept pace with full retraining in "
                  "docs/results/continual, where 0.001 fell behind; `gsau train` keeps the paper's 0.001).",
                  1e-9, 10.0),
      DoubleField("learner.gamma", &C::learner, &LearnerSection::gamma, "",
                  "Weight of the uniformity terms in the GSAU loss.", 0.0, 100.0),
      WithRange(DoubleField("learner.replay_ratio", &C::learner, &LearnerSection::replay_ratio, "fraction",
                            "Share of each batch drawn from older data (replay) rather than fresh events (below 1).",
                            0.0, 1.0),
                "[0, 1)"),
      IntField("learner.replay_capacity", &C::learner, &LearnerSection::replay_capacity, "samples",
               "Older samples kept for replay (a uniform reservoir over everything seen); the learner's memory "
               "grows until it is full.",
               1, 1 << 30),
      DoubleField("learner.replay_recent_fraction", &C::learner, &LearnerSection::replay_recent_fraction, "fraction",
                  "Share of the replayed part of a batch drawn from the latest learner.replay_recent_capacity "
                  "samples that went to replay (the rest from the reservoir); 0 = the reservoir only.",
                  0.0, 1.0),
      IntField("learner.replay_recent_capacity", &C::learner, &LearnerSection::replay_recent_capacity, "samples",
               "Size of the window of latest samples that learner.replay_recent_fraction draws from.", 1,
               1 << 30),
      StringField("learner.checkpoint_dir", &C::learner, &LearnerSection::checkpoint_dir,
                  "Directory of model checkpoints.", {}, true),
      IntField("learner.checkpoint_interval_s", &C::learner, &LearnerSection::checkpoint_interval_s, "s",
               "Seconds between checkpoints.", 1, 86400),
      IntField("learner.checkpoint_keep", &C::learner, &LearnerSection::checkpoint_keep, "checkpoints",
               "Checkpoints kept on disk (older ones are deleted).", 1, 1000),
      IntField("learner.idle_train_s", &C::learner, &LearnerSection::idle_train_s, "s",
               "Without fresh clicks the learner trains on replay alone for this long after the last one (less "
               "once it has gone 200 times over its replay samples, on a small state), then "
               "waits for clicks (gsau_learner_idle 1: no steps, no item records, no core busy); as it stops, "
               "every user's record goes out again from the model replay moved (at most once an hour); 0 = "
               "never on replay alone.",
               0, 31536000),
      IntField("learner.max_failed_steps", &C::learner, &LearnerSection::max_failed_steps, "steps",
               "Training steps that may fail in a row (a loss that is not finite, out of memory) before the "
               "pipeline stops with the error; each failed step makes no update, its fresh clicks are "
               "skipped (they stay in the state and the graph; not trained on, not replayed; "
               "gsau_learner_skipped_samples_total) and the next step waits 0.1 s, doubling with each failure "
               "in a row up to 3.2 s. 0 = stop at the first failure.",
               0, 1000000),
      StringField("learner.prequential_csv", &C::learner, &LearnerSection::prequential_csv,
                  "CSV of the prequential (test-then-train) Recall and NDCG at 10 and 20, one row per window; "
                  "empty: none."),
      IntField("learner.prequential_interval_s", &C::learner, &LearnerSection::prequential_interval_s, "s",
               "Window of the prequential figures (gsau_learner_online_metric, and a CSV row for each window "
               "with clicks; one without leaves the gauges as they were). gsau demo uses 5.",
               1, 86400),
      StringField("publisher.format", &C::publisher, &PublisherSection::format,
                  "Embedding record format: json, or binary (float32 LE value, metadata in headers).",
                  {"json", "binary"}),
      IntField("publisher.interval_ms", &C::publisher, &PublisherSection::interval_ms, "ms",
               "Users who clicked within this interval get their embeddings published together.", 1, 3600000),
      IntField("publisher.item_interval_ms", &C::publisher, &PublisherSection::item_interval_ms, "ms",
               "Item embeddings that training moved are published every this often.", 1, 3600000),
      DoubleField("publisher.item_change_threshold", &C::publisher, &PublisherSection::item_change_threshold,
                  "fraction",
                  "An item's embedding is published again when its row moved by more than this fraction of the "
                  "row last published (relative L2 distance); 0 = whenever training moved it at all. Higher: "
                  "fewer item records, each up to this far behind the model.",
                  0.0, 100.0),
      WithRange(IntField("publisher.user_refresh_s", &C::publisher, &PublisherSection::user_refresh_s, "s",
                         "Every user's record goes out again this often while the model trains (a user who stops "
                         "clicking would otherwise keep a vector of a model the item records have moved away from), "
                         "after those who clicked, at most 1,024 a flush; 0 = never (only when the learner goes "
                         "idle, and after a cold start); at least 60.",
                         0, 31536000),
                "[60, 31536000] or 0"),
      IntField("publisher.stop_flush_ms", &C::publisher, &PublisherSection::stop_flush_ms, "ms",
               "At a stop, how long to wait for the last records' deliveries (the last checkpoint is written "
               "before it); what is not delivered by then the next start publishes again. Keep it below an "
               "orchestrator's grace period less the last checkpoint's time (Kubernetes' grace period: 30 s by "
               "default). 0: "
               "no wait (the producer's close still gives them up to 1 s), and undelivered records are no failure.",
               0, 3600000),
      StringField("metrics.listen_address", &C::metrics, &MetricsSection::listen_address,
                  "host:port of the /metrics endpoint, on every address host resolves to (':9464': every IPv4 and IPv6 "
                  "address); port 0 picks a free one; empty disables it."),
  };
  return table;
}

const Field* FindField(const std::string& key) {
  for (const auto& f : Table()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

constexpr std::string_view kPropertiesKey = "kafka.properties";
constexpr std::string_view kPropertyEnvPrefix = "GSAU_KAFKA_PROPERTY_";

void SetProperty(Config& c, const std::string& name, const std::string& value) {
  for (auto& [k, v] : c.kafka.properties) {
    if (k == name) {
      v = value;
      return;
    }
  }
  c.kafka.properties.emplace_back(name, value);
}

// Where each field's value came from ("file F", "environment V", "--set"), for messages.
using Origins = std::map<std::string, std::string>;

// Sets `key` from `text`; `origin` says where the value came from, for the error (and goes to
// `origins`).
Status SetKey(Config& c, const std::string& key, const std::string& text, const std::string& origin,
              Origins* origins = nullptr) {
  if (key.rfind(std::string(kPropertiesKey) + ".", 0) == 0) {
    SetProperty(c, key.substr(kPropertiesKey.size() + 1), text);
    if (origins != nullptr) (*origins)[key] = origin;
    return Status::Ok();
  }
  const Field* f = FindField(key);
  if (key == kPropertiesKey) {
    return Status::InvalidArgument(std::string(kPropertiesKey) + " (" + origin + "): is a map of librdkafka " +
                                   "properties; set each as kafka.properties.<name>=<value> (e.g. " +
                                   "kafka.properties.security.protocol=SSL) or " + std::string(kPropertyEnvPrefix) +
                                   "<NAME>");
  }
  if (f == nullptr) {
    std::string keys;  // `ingest: 5`, or --set ingest=5: a section given a value
    for (const auto& g : Table()) {
      if (g.key.rfind(key + ".", 0) == 0) keys += (keys.empty() ? "" : ", ") + g.key;
    }
    if (key + "." == std::string(kPropertiesKey).substr(0, key.size() + 1)) keys += ", kafka.properties.<name>";
    if (!keys.empty()) {
      return Status::InvalidArgument(key + " (" + origin + "): is a section, not a value; its keys: " + keys);
    }
    std::string hint;
    const std::string section = key.substr(0, key.find('.'));
    for (const auto& g : Table()) {
      if (g.key.rfind(section + ".", 0) == 0) hint += (hint.empty() ? "" : ", ") + g.key;
    }
    return Status::InvalidArgument("unknown configuration key '" + key + "' (" + origin + ")" +
                                   (hint.empty() ? std::string() : "; known keys here: " + hint));
  }
  Status s = f->set(c, text);
  if (!s.ok()) return Status::InvalidArgument(key + " (" + origin + "): " + s.message());
  if (origins != nullptr) (*origins)[key] = origin;
  return Status::Ok();
}

std::string EnvName(const std::string& key) {
  std::string out = "GSAU_";
  for (char ch : key) out += ch == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return out;
}

// Validate, naming where a field's bad value came from when `origins` knows.
Status ValidateFrom(const Config& c, const Origins* origins, LoadInput::DirectoryChecks checks);

Status FlattenYaml(const YAML::Node& node, const std::string& prefix, Config& c, const std::string& file,
                   Origins* origins) {
  if (node.IsNull() && FindField(prefix) == nullptr) {
    // A section whose keys are all commented out (`kafka:` alone) sets nothing; it failed as the
    // unknown key 'kafka'. A null field below still sets it to "".
    const bool section = std::any_of(Table().begin(), Table().end(), [&](const Field& f) {
      return f.key.rfind(prefix + ".", 0) == 0;
    });
    if (section || prefix == kPropertiesKey) return Status::Ok();
  }
  if (prefix == kPropertiesKey) {
    if (!node.IsMap()) return Status::InvalidArgument("kafka.properties (" + file + "): must be a map");
    std::set<std::string> seen;  // as for fields below
    for (const auto& kv : node) {
      if (!kv.second.IsScalar()) {
        return Status::InvalidArgument("kafka.properties." + kv.first.as<std::string>() + " (" + file +
                                       "): must be a scalar");
      }
      const std::string key = std::string(kPropertiesKey) + "." + kv.first.as<std::string>();
      if (!seen.insert(key).second) return Status::InvalidArgument(key + " (" + file + "): given twice");
      GSAU_RETURN_IF_ERROR(SetKey(c, key, kv.second.as<std::string>(), file, origins));
    }
    return Status::Ok();
  }
  if (node.IsMap()) {
    // yaml-cpp keeps the last of a key given twice: one of the two values would be dropped unseen.
    std::set<std::string> seen;
    for (const auto& kv : node) {
      const std::string key = prefix.empty() ? kv.first.as<std::string>() : prefix + "." + kv.first.as<std::string>();
      if (!seen.insert(key).second) return Status::InvalidArgument(key + " (" + file + "): given twice");
      GSAU_RETURN_IF_ERROR(FlattenYaml(kv.second, key, c, file, origins));
    }
    return Status::Ok();
  }
  if (node.IsSequence()) {
    // Only a list field, or the brokers' comma-separated list, takes a list: `state.path: [a, b]`
    // would have become the path "a,b".
    if (const Field* f = FindField(prefix);
        f != nullptr && f->type != "list of strings" && prefix != "kafka.bootstrap_servers") {
      return Status::InvalidArgument(prefix + " (" + file + "): must be a single value, got a list");
    }
    std::string joined;
    for (const auto& item : node) joined += (joined.empty() ? "" : ",") + item.as<std::string>();
    return SetKey(c, prefix, joined, file, origins);
  }
  if (node.IsNull()) return SetKey(c, prefix, "", file, origins);
  return SetKey(c, prefix, node.as<std::string>(), file, origins);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> Environment() {
  std::vector<std::pair<std::string, std::string>> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace_back(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return out;
}

Result<Config> Load(const LoadInput& input) {
  Config c;
  Origins origins;
  if (!input.config_file.empty()) {
    const std::string& file = input.config_file;
    if (!std::filesystem::exists(file)) {
      return Status::NotFound("config file '" + file + "' does not exist");
    }
    if (std::filesystem::is_directory(file)) {  // (a pipe, --config <(envsubst < f), reads fine)
      return Status::InvalidArgument("config file '" + file + "' is a directory");
    }
    // Opened here: yaml-cpp reports a file it cannot open as "bad file", which read as bad YAML.
    std::ifstream in(file);
    if (!in) return Status::InvalidArgument("config file '" + file + "' cannot be read: " + std::strerror(errno));
    YAML::Node root;
    try {
      root = YAML::Load(in);
    } catch (const YAML::Exception& e) {
      return Status::InvalidArgument("config file '" + file + "' is not valid YAML: " + e.what());
    } catch (const std::exception& e) {  // an unreadable file: yaml-cpp's stream throws
      return Status::InvalidArgument("config file '" + file + "' cannot be read: " + e.what());
    }
    if (!root.IsNull()) {
      if (!root.IsMap()) return Status::InvalidArgument("config file '" + file + "': the top level must be a map");
      try {
        GSAU_RETURN_IF_ERROR(FlattenYaml(root, "", c, "file " + file, &origins));
      } catch (const YAML::Exception& e) {
        return Status::InvalidArgument("config file '" + file + "': " + e.what());
      }
    }
  }
  for (const auto& [name, value] : input.env) {
    if (name.rfind(kPropertyEnvPrefix, 0) == 0) {
      std::string prop = name.substr(kPropertyEnvPrefix.size());
      for (auto& ch : prop) ch = ch == '_' ? '.' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      GSAU_RETURN_IF_ERROR(SetKey(c, std::string(kPropertiesKey) + "." + prop, value, "environment " + name, &origins));
      continue;
    }
    for (const auto& f : Table()) {
      if (EnvName(f.key) == name) GSAU_RETURN_IF_ERROR(SetKey(c, f.key, value, "environment " + name, &origins));
    }
  }
  for (const auto& o : input.overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("--set '" + o + "': expected key=value");
    }
    GSAU_RETURN_IF_ERROR(SetKey(c, o.substr(0, eq), o.substr(eq + 1), "--set", &origins));
  }
  for (const auto& f : input.flags) GSAU_RETURN_IF_ERROR(SetKey(c, f.key, f.value, f.flag, &origins));
  GSAU_RETURN_IF_ERROR(ValidateFrom(c, &origins, input.directory_checks));
  return c;
}

std::vector<std::string> UnknownEnvironment(const LoadInput& input) {
  std::vector<std::string> sections;
  for (const auto& f : Table()) {
    std::string s = EnvName(f.key.substr(0, f.key.find('.'))) + "_";
    if (std::find(sections.begin(), sections.end(), s) == sections.end()) sections.push_back(std::move(s));
  }
  // The suggestion: the field whose name shares the longest prefix with the variable's.
  auto nearest = [](const std::string& name) {
    std::string best;
    size_t best_len = 0;
    for (const auto& f : Table()) {
      const std::string env = EnvName(f.key);
      size_t n = 0;
      while (n < env.size() && n < name.size() && env[n] == name[n]) ++n;
      if (n > best_len) best_len = n, best = env;
    }
    return best;
  };
  std::vector<std::string> out;
  // The project's own variables that share a section's prefix (scripts/kafka_fetch.sh's).
  static constexpr std::string_view kNotConfig[] = {"GSAU_KAFKA_VERSION"};
  for (const auto& [name, value] : input.env) {
    if (name.rfind(kPropertyEnvPrefix, 0) == 0) continue;
    if (std::find(std::begin(kNotConfig), std::end(kNotConfig), name) != std::end(kNotConfig)) continue;
    if (name == EnvName(std::string(kPropertiesKey))) {  // the map as one variable
      out.push_back(name + " (did you mean " + std::string(kPropertyEnvPrefix) + "<NAME>, one variable a property?)");
      continue;
    }
    if (std::find(sections.begin(), sections.end(), name + "_") != sections.end()) {  // a section given a value
      out.push_back(name + " (did you mean one of the section's fields, " + name + "_<FIELD>?)");
      continue;
    }
    // The YAML key's plural, kafka.properties: the variables' prefix is singular.
    constexpr std::string_view kPlural = "GSAU_KAFKA_PROPERTIES_";
    if (name.rfind(kPlural, 0) == 0) {
      out.push_back(name + " (did you mean " + std::string(kPropertyEnvPrefix) + name.substr(kPlural.size()) + "?)");
      continue;
    }
    std::string spelled = name;  // with the section's name as the table spells it
    bool in_section = false;
    for (const auto& s : sections) in_section = in_section || name.rfind(s, 0) == 0;
    if (!in_section && name.rfind("GSAU_", 0) == 0) {
      // A section's name one 'S' off (GSAU_TOPIC_CLICKS, GSAU_METRIC_...): read as the section's.
      const size_t end = name.find('_', 5);
      const std::string word = name.substr(5, end == std::string::npos ? std::string::npos : end - 5);
      for (const auto& s : sections) {
        const std::string sword = s.substr(5, s.size() - 6);
        if (end != std::string::npos && (word + "S" == sword || word == sword + "S")) {
          spelled = s + name.substr(end + 1);
          in_section = true;
        }
      }
    }
    if (!in_section) continue;
    bool known = false;
    for (const auto& f : Table()) known = known || EnvName(f.key) == name;
    if (!known) out.push_back(name + " (did you mean " + nearest(spelled) + "?)");
  }
  return out;
}

namespace {

namespace fs = std::filesystem;

// host:port with a numeric port in [0, 65535] (0: any free port), or empty.
Status CheckListenAddress(const std::string& address) {
  if (address.empty()) return Status::Ok();
  if (address.find("://") != std::string::npos) {
    return Status::InvalidArgument("expected host:port without a scheme or path (e.g. 0.0.0.0:9464), got '" +
                                   address + "'");
  }
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("expected host:port, got '" + address + "'");
  // An IPv6 host goes in brackets ([::1]:9464): "::1" read as host ':' and port 1.
  const std::string host = address.substr(0, colon);
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (!bracketed && host.find_first_of(":[]") != std::string::npos) {
    return Status::InvalidArgument("expected host:port with an IPv6 host in brackets ([::1]:9464), got '" + address +
                                   "'");
  }
  const std::string port = address.substr(colon + 1);
  int value = -1;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value < 0 || value > 65535) {
    return Status::InvalidArgument("the port must be a number in [0, 65535], got '" + address + "'");
  }
  return Status::Ok();
}

// An absolute, lexically normal path without a trailing separator; symbolic links in the
// part that exists resolved (two spellings of one directory compare equal).
fs::path Normalised(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  if (ec) p = fs::absolute(path, ec);
  p = p.lexically_normal();
  if (!p.has_filename() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();
  return p;
}

// `inner` is `outer` or lies inside it.
bool Within(const fs::path& inner, const fs::path& outer) {
  auto o = outer.begin();
  for (auto i = inner.begin(); o != outer.end(); ++i, ++o) {
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

// Why `path` cannot be the directory start-up creates or opens: a file at it or on its way
// (found at once here, rather than at the first checkpoint, minutes later, as an I/O error that
// names no field). Empty when nothing in the file system says so; permissions are left to the
// open, which names the path.
std::string NotADirectory(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  if (ec) return {};
  // "dir/" names dir (not lexically_normal: "link/.." is not "." when link is a symbolic link).
  while (!p.has_filename() && p.has_parent_path() && p != p.root_path()) p = p.parent_path();
  for (fs::path at = p;; at = at.parent_path()) {
    const fs::file_status st = fs::status(at, ec);
    if (fs::exists(st)) {
      if (fs::is_directory(st)) return {};
      return at == p ? "'" + path + "' is a file" : "'" + at.string() + "' on its way is a file";
    }
    if (!at.has_relative_path()) return {};
  }
}

Status ValidateFrom(const Config& c, const Origins* origins, LoadInput::DirectoryChecks checks) {
  using Checks = LoadInput::DirectoryChecks;
  // "<key> (<where its value came from>): <problem>", the origin when it is known.
  const auto invalid = [origins](const std::string& key, const std::string& problem) {
    std::string from;
    if (origins != nullptr) {
      if (const auto it = origins->find(key); it != origins->end()) from = " (" + it->second + ")";
    }
    return Status::InvalidArgument(key + from + ": " + problem);
  };
  // "from <origin>" (or "the default") for a field a rule across fields names beside the one it
  // blames; empty when the origins are not known.
  const auto set_from = [origins](const std::string& key) {
    if (origins == nullptr) return std::string();
    if (const auto it = origins->find(key); it != origins->end()) return "from " + it->second;
    return std::string("the default");
  };
  const auto with = [](const std::string& value, const std::string& from) {
    return from.empty() ? value : value + ", " + from;
  };
  for (const auto& f : Table()) {
    const std::string problem = f.check(c);
    if (!problem.empty()) return invalid(f.key, problem);
  }
  // Rules across fields; each names the field to change.
  if (c.ingest.queue_capacity < c.ingest.batch_max_events) {
    return invalid("ingest.queue_capacity", "must be at least ingest.batch_max_events (" +
                                   with(std::to_string(c.ingest.batch_max_events),
                                        set_from("ingest.batch_max_events")) +
                                   "), got " +
                                   std::to_string(c.ingest.queue_capacity) +
                                   ": ingest waits for room for a whole batch");
  }
  if (c.learner.embedding_dim % 2 != 0) {
    return invalid("learner.embedding_dim", "must be even (the sequence encoder's 2 attention heads "
                                   "split it), got " + std::to_string(c.learner.embedding_dim));
  }
  if (c.topics.replication_factor == 0) {
    return invalid("topics.replication_factor", "must be -1 (the brokers' default) or at least 1, got 0");
  }
  if (c.publisher.user_refresh_s > 0 && c.publisher.user_refresh_s < 60) {
    return invalid("publisher.user_refresh_s", "must be 0 (off) or at least 60 (each refresh publishes every user "
                                   "of the state again), got " + std::to_string(c.publisher.user_refresh_s));
  }
  if (c.learner.replay_ratio >= 1.0) {
    return invalid("learner.replay_ratio", "must be below 1 (at 1 no fresh click is ever trained on), "
                                   "got " + FormatDouble(c.learner.replay_ratio));
  }
  if (std::llround(static_cast<double>(c.learner.batch_size) * (1.0 - c.learner.replay_ratio)) < 1) {
    const std::string batch_from = set_from("learner.batch_size");
    return invalid("learner.replay_ratio", "leaves no fresh sample in a batch of learner.batch_size " +
                                               std::to_string(c.learner.batch_size) + " (" +
                                               (batch_from.empty() ? "" : batch_from + "; ") +
                                               "batch_size x (1 - replay_ratio) must round to at least 1; once "
                                               "replay holds data no fresh click would be trained on), got " +
                                               FormatDouble(c.learner.replay_ratio));
  }
  if (Status s = CheckListenAddress(c.metrics.listen_address); !s.ok()) {
    return invalid("metrics.listen_address", s.message());
  }
  if (!c.state.path.empty() && !c.learner.checkpoint_dir.empty()) {
    const fs::path state = Normalised(c.state.path), checkpoints = Normalised(c.learner.checkpoint_dir);
    // Inside (or equal to) the state: a rollback moves the state directory aside, checkpoints
    // and its marker with it. Holding the state is fine: only ckpt-* entries are ever moved.
    if (Within(checkpoints, state)) {
      return invalid("learner.checkpoint_dir", "must not lie inside state.path ('" + c.state.path +
                                     "'), got '" + c.learner.checkpoint_dir +
                                     "': a rollback moves the state directory aside and restores a checkpoint "
                                     "into it");
    }
  }
  for (const auto& [key, dir] : {std::pair<const char*, const std::string*>{"state.path", &c.state.path},
                                 {"learner.checkpoint_dir", &c.learner.checkpoint_dir}}) {
    if (dir->empty() || checks == Checks::kNone || (checks == Checks::kState && dir != &c.state.path)) continue;
    if (const std::string why = NotADirectory(*dir); !why.empty()) {
      return invalid(key, "must be a directory (created when missing): " + why);
    }
  }
  if (!c.learner.prequential_csv.empty() && checks == Checks::kAll) {
    std::error_code ec;
    if (fs::is_directory(c.learner.prequential_csv, ec)) {
      return invalid("learner.prequential_csv",
                     "must be a file, got the directory '" + c.learner.prequential_csv + "'");
    }
    const fs::path parent = fs::absolute(c.learner.prequential_csv, ec).parent_path();
    if (const std::string why = NotADirectory(parent.string()); !why.empty()) {
      return invalid("learner.prequential_csv", "its folder must be a directory: " + why);
    }
  }
  const std::pair<const char*, const std::string*> topics[] = {
      {"topics.clicks", &c.topics.clicks},
      {"topics.dead_letter", &c.topics.dead_letter},
      {"topics.user_embeddings", &c.topics.user_embeddings},
      {"topics.item_embeddings", &c.topics.item_embeddings}};
  for (size_t a = 0; a < std::size(topics); ++a) {
    // Kafka's own rule. Checked here because the clicks topic is subscribed to: librdkafka takes
    // a name starting with '^' as a pattern ("^clicks" also matched clicks.dlq, and ingest read
    // its own dead letters back without end); other bad names failed later, naming the topic only.
    const std::string& name = *topics[a].second;
    const bool legal = name.size() <= 249 && name != "." && name != ".." &&
                       std::all_of(name.begin(), name.end(), [](unsigned char ch) {
                         return std::isalnum(ch) || ch == '.' || ch == '_' || ch == '-';
                       });
    if (!legal) {
      return invalid(topics[a].first, "must be a Kafka topic name (1-249 of a-z, A-Z, 0-9, '.', '_', '-'; not "
                                      "'.' or '..'), got '" + name + "'");
    }
    for (size_t b = 0; b < a; ++b) {
      if (*topics[a].second == *topics[b].second) {
        // Where the other came from too: the one just set may be either.
        return invalid(topics[a].first, std::string("must differ from ") + topics[b].first + " (" +
                                            with("both '" + *topics[a].second + "'", set_from(topics[b].first)) +
                                            ")");
      }
    }
  }
  // Set from their own keys first, a property would override them without a word: with
  // bootstrap.servers, `gsau demo` (no kafka.bootstrap_servers: an embedded broker) sent its
  // synthetic clicks and embeddings to the brokers the property named, and --bootstrap lost to it.
  // The same value as the key's changes nothing and is taken; not an empty one (`gsau demo` sets
  // an unset kafka.bootstrap_servers to its embedded broker's address after this).
  const std::tuple<std::string_view, std::string_view, const std::string*> kOwnKeys[] = {
      {"bootstrap.servers", "kafka.bootstrap_servers (or --bootstrap)", &c.kafka.bootstrap_servers},
      {"metadata.broker.list", "kafka.bootstrap_servers (or --bootstrap)", &c.kafka.bootstrap_servers},
      {"client.id", "kafka.client_id", &c.kafka.client_id},
  };
  for (const auto& [name, value] : c.kafka.properties) {
    for (const auto& [property, key, own] : kOwnKeys) {
      if (name == property && (value != *own || own->empty())) {
        const std::string now = own->empty() ? ", unset here" : " ('" + *own + "')";
        return invalid(std::string(kPropertiesKey) + "." + name,
                       "is set from " + std::string(key) + now + "; set that instead");
      }
    }
    if (const auto why = ingest::ConsumerOwnedProperty(name, value); !why.empty()) {
      return invalid(std::string(kPropertiesKey) + "." + name,
                     "is set by gsau's consumer and cannot be changed here: " + std::string(why));
    }
  }
  if (!c.kafka.bootstrap_servers.empty() || !c.kafka.properties.empty()) {
    kafka::KafkaOptions k = ToKafkaOptions(c);
    if (k.bootstrap_servers.empty()) k.bootstrap_servers = "127.0.0.1:9092";  // only to check the properties
    Status s = kafka::ValidateKafkaOptions(k);
    if (!s.ok()) {
      // The property the message names ('name'), with where it was set.
      for (const auto& [name, value] : c.kafka.properties) {
        if (s.message().find("'" + name + "'") != std::string::npos) {
          return invalid(std::string(kPropertiesKey) + "." + name, s.message());
        }
      }
      // A refusal that names settings rather than the property given (acks=1 set as
      // request.required.acks, idempotence turned off): the property refused on its own.
      for (const auto& [name, value] : c.kafka.properties) {
        kafka::KafkaOptions one = k;
        one.properties = {{name, value}};
        if (!kafka::ValidateKafkaOptions(one).ok()) {
          return invalid(std::string(kPropertiesKey) + "." + name, s.message());
        }
      }
      return invalid("kafka.properties", s.message());
    }
  }
  return Status::Ok();
}

}  // namespace

Status Validate(const Config& c) { return ValidateFrom(c, nullptr, LoadInput::DirectoryChecks::kAll); }

std::string Config::Redacted() const {
  std::string out;
  for (const auto& f : Table()) out += f.key + " = " + f.get(*this) + "\n";
  for (const auto& [k, v] : kafka.properties) {
    out += std::string(kPropertiesKey) + "." + k + " = " + (kafka::IsSecretProperty(k) ? "****" : v) + "\n";
  }
  return out;
}

std::vector<FieldDoc> Fields() {
  const Config defaults;
  std::vector<FieldDoc> out;
  for (const auto& f : Table()) out.push_back({f.key, f.type, f.unit, f.get(defaults), f.description, f.range});
  out.push_back({std::string(kPropertiesKey), "map", "", "{}",
                 "librdkafka properties passed verbatim to every client (security.protocol, sasl.*, ssl.*, "
                 "...); env GSAU_KAFKA_PROPERTY_<NAME>. Secret values are never logged. The consumer's own "
                 "group.id, group.instance.id, session.timeout.ms, enable.auto.commit, enable.auto.offset.store, "
                 "auto.offset.reset, enable.partition.eof and isolation.level (but read_committed) are refused "
                 "(exactly once rests on them), and so are bootstrap.servers, metadata.broker.list and client.id "
                 "unless equal to kafka.bootstrap_servers and kafka.client_id (set those instead), and "
                 "partitioner=random (a key's records must stay on one partition).",
                 ""});
  return out;
}

std::string FieldsMarkdown() {
  std::string out =
      "| key | environment | type | unit | default | meaning |\n"
      "|---|---|---|---|---|---|\n";
  for (const auto& f : Fields()) {
    const std::string env = f.key == kPropertiesKey ? std::string(kPropertyEnvPrefix) + "<NAME>" : EnvName(f.key);
    const std::string type = f.range.empty() ? f.type : f.type + " in " + f.range;
    out += "| `" + f.key + "` | `" + env + "` | " + type + " | " + f.unit + " | `" + f.default_value + "` | " +
           f.description + " |\n";
  }
  return out;
}

kafka::KafkaOptions ToKafkaOptions(const Config& c) {
  kafka::KafkaOptions k;
  k.bootstrap_servers = c.kafka.bootstrap_servers;
  k.client_id = c.kafka.client_id;
  k.properties = c.kafka.properties;
  return k;
}

metrics::MetricsOptions ToMetricsOptions(const Config& c) {
  metrics::MetricsOptions m;
  m.listen_address = c.metrics.listen_address;
  return m;
}

state::StateOptions ToStateOptions(const Config& c) {
  state::StateOptions s;
  s.path = c.state.path;
  s.session_length = static_cast<uint32_t>(c.state.session_length);
  s.block_cache_bytes = static_cast<size_t>(c.state.block_cache_mb) << 20;
  s.write_buffer_bytes = static_cast<size_t>(c.state.write_buffer_mb) << 20;
  s.min_free_disk_bytes = static_cast<uint64_t>(c.state.min_free_disk_mb) << 20;
  s.changelog_retention_batches = static_cast<uint64_t>(c.state.changelog_retention_batches);
  s.compression = c.state.compression == "none"   ? state::Compression::kNone
                  : c.state.compression == "zstd" ? state::Compression::kZSTD
                                                  : state::Compression::kLZ4;
  s.sync = c.state.sync;
  return s;
}

ingest::IngestOptions ToIngestOptions(const Config& c) {
  ingest::IngestOptions o;
  o.kafka = ToKafkaOptions(c);
  o.topic = c.topics.clicks;
  o.dead_letter_topic = c.topics.dead_letter;
  o.group_id = c.ingest.group_id;
  o.batch_max_events = c.ingest.batch_max_events;
  o.batch_max_wait_ms = c.ingest.batch_max_wait_ms;
  o.accepted_event_types = c.ingest.accepted_event_types;
  o.session_timeout_ms = c.ingest.session_timeout_ms;
  o.group_instance_id = c.ingest.group_instance_id;
  o.decoder.max_value_bytes = static_cast<size_t>(c.ingest.max_value_bytes);
  o.decoder.min_ts_ms = int64_t{c.ingest.min_event_time_s} * 1000;
  o.decoder.max_ahead_ms = int64_t{c.ingest.max_event_time_ahead_s} * 1000;
  o.dead_letter_partitions = c.topics.partitions;
  o.dead_letter_replication_factor = c.topics.replication_factor;
  return o;
}

publisher::PublisherOptions ToPublisherOptions(const Config& c) {
  publisher::PublisherOptions o;
  o.kafka = ToKafkaOptions(c);
  o.user_topic = c.topics.user_embeddings;
  o.item_topic = c.topics.item_embeddings;
  o.format = c.publisher.format == "binary" ? publisher::Format::kBinary : publisher::Format::kJson;
  o.partitions = c.topics.partitions;
  o.replication_factor = c.topics.replication_factor;
  return o;
}

}  // namespace gsau::config
