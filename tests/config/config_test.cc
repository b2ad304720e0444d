#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <thread>

#include "gsau/config/config.h"
#include "temp_dir.h"

namespace gsau::config {
namespace {

using gsau::testing::TempDir;
using gsau::testing::WriteFile;

Result<Config> LoadWith(const std::string& file, std::vector<std::pair<std::string, std::string>> env,
                        std::vector<std::string> sets) {
  LoadInput in;
  in.config_file = file;
  in.env = std::move(env);
  in.overrides = std::move(sets);
  return Load(in);
}

TEST(ConfigTest, DefaultsAreValid) {
  auto c = LoadWith("", {}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->topics.clicks, "clicks");
  EXPECT_EQ(c->ingest.batch_max_events, 1000);
  EXPECT_EQ(c->state.session_length, 50);
}

// The decoder's floor is given in seconds (an int field) and taken in milliseconds.
TEST(ConfigTest, MinEventTimeReachesTheDecoderInMilliseconds) {
  auto c = LoadWith("", {}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(ToIngestOptions(*c).decoder.min_ts_ms, 100'000'000'000);
  auto off = LoadWith("", {}, {"ingest.min_event_time_s=0"});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(ToIngestOptions(*off).decoder.min_ts_ms, 0);
  auto negative = LoadWith("", {}, {"ingest.min_event_time_s=-1"});
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("ingest.min_event_time_s"), std::string::npos)
      << negative.status().message();
}

// Each module's options carry every field configured for it, in the module's units, and no
// other value: every field set here differs from its default (a dropped or swapped mapping
// would leave a default or another field's value).
TEST(ConfigTest, ModuleOptionsCarryEveryConfiguredField) {
  auto c = LoadWith("", {},
                    {"kafka.bootstrap_servers=b1:9092", "kafka.client_id=cid", "topics.clicks=tc",
                     "topics.dead_letter=td", "topics.user_embeddings=tu", "topics.item_embeddings=ti",
                     "topics.partitions=7", "topics.replication_factor=3",
                     "ingest.group_id=grp", "ingest.batch_max_events=321", "ingest.batch_max_wait_ms=37",
                     "ingest.accepted_event_types=[click, view]", "ingest.session_timeout_ms=12345",
                     "ingest.group_instance_id=inst-1", "ingest.max_value_bytes=4097", "ingest.min_event_time_s=5",
                     "ingest.max_event_time_ahead_s=600",
                     "state.path=/s/p", "state.session_length=77", "state.block_cache_mb=3", "state.write_buffer_mb=5",
                     "state.min_free_disk_mb=11", "state.changelog_retention_batches=1300", "state.compression=zstd",
                     "state.sync=true", "publisher.format=binary", "metrics.listen_address=0.0.0.0:9999"});
  ASSERT_TRUE(c.ok()) << c.status();
  const auto k = ToKafkaOptions(*c);
  EXPECT_EQ(k.bootstrap_servers, "b1:9092");
  EXPECT_EQ(k.client_id, "cid");
  EXPECT_EQ(ToMetricsOptions(*c).listen_address, "0.0.0.0:9999");

  const auto s = ToStateOptions(*c);
  EXPECT_EQ(s.path, "/s/p");
  EXPECT_EQ(s.session_length, 77u);
  EXPECT_EQ(s.block_cache_bytes, size_t{3} * 1024 * 1024);
  EXPECT_EQ(s.write_buffer_bytes, size_t{5} * 1024 * 1024);
  EXPECT_EQ(s.min_free_disk_bytes, uint64_t{11} * 1024 * 1024);
  EXPECT_EQ(s.changelog_retention_batches, 1300u);
  EXPECT_EQ(s.compression, state::Compression::kZSTD);
  EXPECT_TRUE(s.sync);
  for (const auto& [name, value] : std::vector<std::pair<std::string, state::Compression>>{
           {"none", state::Compression::kNone}, {"lz4", state::Compression::kLZ4}}) {
    auto other = LoadWith("", {}, {"state.compression=" + name});
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_EQ(ToStateOptions(*other).compression, value) << name;
  }

  const auto i = ToIngestOptions(*c);
  EXPECT_EQ(i.kafka.bootstrap_servers, "b1:9092");
  EXPECT_EQ(i.topic, "tc");
  EXPECT_EQ(i.dead_letter_topic, "td");
  EXPECT_EQ(i.group_id, "grp");
  EXPECT_EQ(i.batch_max_events, 321);
  EXPECT_EQ(i.batch_max_wait_ms, 37);
  EXPECT_EQ(i.accepted_event_types, (std::vector<std::string>{"click", "view"}));
  EXPECT_EQ(i.session_timeout_ms, 12345);
  EXPECT_EQ(i.group_instance_id, "inst-1");
  EXPECT_EQ(i.decoder.max_value_bytes, 4097u);
  EXPECT_EQ(i.decoder.min_ts_ms, 5000);
  EXPECT_EQ(i.decoder.max_ahead_ms, 600'000);
  EXPECT_EQ(i.dead_letter_partitions, 7);
  EXPECT_EQ(i.dead_letter_replication_factor, 3);

  const auto p = ToPublisherOptions(*c);
  EXPECT_EQ(p.kafka.client_id, "cid");
  EXPECT_EQ(p.user_topic, "tu");
  EXPECT_EQ(p.item_topic, "ti");
  EXPECT_EQ(p.format, publisher::Format::kBinary);
  EXPECT_EQ(p.partitions, 7);
  EXPECT_EQ(p.replication_factor, 3);
  // A list given as YAML writes it, in a --set or the environment.
  for (const char* list : {"click,view", " [click, view] ", "['click', \"view\"]"}) {
    auto l = LoadWith("", {{"GSAU_INGEST_ACCEPTED_EVENT_TYPES", list}}, {});
    ASSERT_TRUE(l.ok()) << l.status();
    EXPECT_EQ(ToIngestOptions(*l).accepted_event_types, (std::vector<std::string>{"click", "view"})) << list;
  }
}

TEST(ConfigTest, FileThenEnvironmentThenFlags) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"),
            "kafka:\n  bootstrap_servers: broker:9092\n  properties:\n    security.protocol: SASL_SSL\n"
            "    sasl.mechanisms: PLAIN\n    sasl.username: alice\n    sasl.password: hunter2\n"
            "ingest:\n  batch_max_events: 500\n  batch_max_wait_ms: 20\n  accepted_event_types: [click, view]\n"
            "learner:\n  gamma: 0.2\n");
  auto c = LoadWith(dir.File("c.yaml"), {{"GSAU_INGEST_BATCH_MAX_EVENTS", "700"}, {"GSAU_LEARNER_GAMMA", "0.3"}},
                    {"learner.gamma=0.4"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->kafka.bootstrap_servers, "broker:9092");
  EXPECT_EQ(c->ingest.batch_max_events, 700);       // env beats file
  EXPECT_EQ(c->ingest.batch_max_wait_ms, 20);       // file beats default
  EXPECT_DOUBLE_EQ(c->learner.gamma, 0.4);          // flag beats env
  EXPECT_EQ(c->ingest.accepted_event_types, (std::vector<std::string>{"click", "view"}));
  ASSERT_EQ(c->kafka.properties.size(), 4u);
  auto k = ToKafkaOptions(*c);
  EXPECT_EQ(k.properties[0], (std::pair<std::string, std::string>{"security.protocol", "SASL_SSL"}));
}

TEST(ConfigTest, SecretsNeverAppearInRedactedOutput) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"), "kafka:\n  properties:\n    sasl.password: hunter2\n    sasl.username: alice\n");
  auto c = LoadWith(dir.File("c.yaml"), {{"GSAU_KAFKA_PROPERTY_SSL_KEY_PASSWORD", "s3cret"}}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string dump = c->Redacted();
  EXPECT_EQ(dump.find("hunter2"), std::string::npos) << dump;
  EXPECT_EQ(dump.find("s3cret"), std::string::npos) << dump;
  EXPECT_NE(dump.find("kafka.properties.sasl.password = ****"), std::string::npos) << dump;
  EXPECT_NE(dump.find("kafka.properties.ssl.key.password = ****"), std::string::npos) << dump;
  EXPECT_NE(dump.find("sasl.username = alice"), std::string::npos) << dump;
}

TEST(ConfigTest, NegativeBatchSizeNamesTheFieldAndSource) {
  auto c = LoadWith("", {}, {"ingest.batch_max_events=-5"});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "ingest.batch_max_events (--set): must be in [1, 1000000], got -5");
  auto range = LoadWith("", {{"GSAU_INGEST_BATCH_MAX_EVENTS", "0"}}, {});
  ASSERT_FALSE(range.ok());
  EXPECT_EQ(range.status().message(),
            "ingest.batch_max_events (environment GSAU_INGEST_BATCH_MAX_EVENTS): must be in [1, 1000000], got 0");
  TempDir dir;
  WriteFile(dir.File("c.yaml"), "ingest:\n  batch_max_events: 0\n");
  auto file = LoadWith(dir.File("c.yaml"), {}, {});
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().message(),
            "ingest.batch_max_events (file " + dir.File("c.yaml") + "): must be in [1, 1000000], got 0");
  EXPECT_TRUE(LoadWith(dir.File("c.yaml"), {}, {"ingest.batch_max_events=10"}).ok()) << "a later source wins";
  // A list where one value belongs: it became the path "a,b".
  WriteFile(dir.File("list.yaml"), "state:\n  path: [a, b]\n");
  auto list = LoadWith(dir.File("list.yaml"), {}, {});
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(list.status().message(),
            "state.path (file " + dir.File("list.yaml") + "): must be a single value, got a list");
  WriteFile(dir.File("types.yaml"), "ingest:\n  accepted_event_types: [click, view]\n");
  auto types = LoadWith(dir.File("types.yaml"), {}, {});
  ASSERT_TRUE(types.ok()) << types.status();
  EXPECT_EQ(types->ingest.accepted_event_types, (std::vector<std::string>{"click", "view"}));
  WriteFile(dir.File("brokers.yaml"), "kafka:\n  bootstrap_servers: [b1:9092, b2:9092]\n");
  auto brokers = LoadWith(dir.File("brokers.yaml"), {}, {});
  ASSERT_TRUE(brokers.ok()) << brokers.status();
  EXPECT_EQ(brokers->kafka.bootstrap_servers, "b1:9092,b2:9092") << "librdkafka's comma-separated form";
  auto e = LoadWith("", {{"GSAU_INGEST_BATCH_MAX_EVENTS", "many"}}, {});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().message(),
            "ingest.batch_max_events (environment GSAU_INGEST_BATCH_MAX_EVENTS): expected an integer, got 'many'");
}

TEST(ConfigTest, UnknownKeyIsNamed) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"), "ingest:\n  batch_size: 10\n");
  auto c = LoadWith(dir.File("c.yaml"), {}, {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("unknown configuration key 'ingest.batch_size'"), std::string::npos)
      << c.status();
  EXPECT_NE(c.status().message().find("ingest.batch_max_events"), std::string::npos) << "lists the known keys";
}

// A value where a section or a map belongs was "unknown configuration key 'ingest'" (the key is
// known: it is a section), and --set kafka.properties=... did not say how properties are set.
TEST(ConfigTest, AValueGivenToASectionOrToThePropertiesMapSaysHowToSetThem) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"), "ingest: 5\n");
  auto file = LoadWith(dir.File("c.yaml"), {}, {});
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find("ingest (file " + dir.File("c.yaml") + "): is a section, not a value; "
                                         "its keys: "),
            std::string::npos)
      << file.status();
  EXPECT_NE(file.status().message().find("ingest.batch_max_events"), std::string::npos) << file.status();
  auto kafka = LoadWith("", {}, {"kafka=broker:9092"});
  ASSERT_FALSE(kafka.ok());
  EXPECT_NE(kafka.status().message().find("kafka.client_id, kafka.properties.<name>"), std::string::npos)
      << kafka.status();
  auto set = LoadWith("", {}, {"learner=1"});
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("learner (--set): is a section"), std::string::npos) << set.status();
  auto properties = LoadWith("", {}, {"kafka.properties=acks=all"});
  ASSERT_FALSE(properties.ok());
  EXPECT_NE(properties.status().message().find("kafka.properties (--set): is a map of librdkafka properties; set "
                                               "each as kafka.properties.<name>=<value>"),
            std::string::npos)
      << properties.status();
  auto unknown = LoadWith("", {}, {"ingestion=1"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown configuration key 'ingestion'"), std::string::npos)
      << unknown.status();
}

// yes/no and on/off are taken (YAML 1.1's words), and a refusal names them too.
TEST(ConfigTest, ABoolTakesYamlsWordsAndARefusalSaysWhich) {
  for (const std::string yes : {"true", "True", "yes", "on", "1"}) {
    auto c = LoadWith("", {}, {"state.sync=" + yes});
    ASSERT_TRUE(c.ok()) << yes << ": " << c.status();
    EXPECT_TRUE(c->state.sync) << yes;
  }
  auto no = LoadWith("", {}, {"state.sync=off"});
  ASSERT_TRUE(no.ok()) << no.status();
  EXPECT_FALSE(no->state.sync);
  auto maybe = LoadWith("", {}, {"state.sync=maybe"});
  ASSERT_FALSE(maybe.ok());
  EXPECT_EQ(maybe.status().message(),
            "state.sync (--set): expected true or false (or yes/no, on/off, 1/0), got 'maybe'");
}

// A section whose keys are all commented out is a common way to leave a file's defaults: it
// stopped start-up as "unknown configuration key 'kafka'".
TEST(ConfigTest, ASectionWithNoKeysSetsNothing) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"), "kafka:\n  # bootstrap_servers: broker:9092\n  properties:\n    # acks: all\n"
                                "ingest:\n  # group_id: g\nlearner:\n  threads: 1\n");
  auto c = LoadWith(dir.File("c.yaml"), {}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->learner.threads, 1);
  EXPECT_EQ(c->kafka.bootstrap_servers, Config{}.kafka.bootstrap_servers);
  EXPECT_TRUE(c->kafka.properties.empty());
  // A null field is still that field set to "" (and checked as such).
  WriteFile(dir.File("f.yaml"), "topics:\n  clicks:\n");
  auto f = LoadWith(dir.File("f.yaml"), {}, {});
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("topics.clicks"), std::string::npos) << f.status();
}

TEST(ConfigTest, MissingAndMalformedFilesAreNamed) {
  auto missing = LoadWith("/nonexistent/gsau.yaml", {}, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/gsau.yaml"), std::string::npos);
  TempDir dir;
  WriteFile(dir.File("bad.yaml"), "ingest: [unclosed\n");
  auto bad = LoadWith(dir.File("bad.yaml"), {}, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not valid YAML"), std::string::npos) << bad.status();
}

TEST(ConfigTest, EnumsAndKafkaPropertiesAreChecked) {
  auto d = LoadWith("", {}, {"learner.device=tpu"});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().message(), "learner.device (--set): must be one of auto, cpu, cuda, got 'tpu'");
  auto p = LoadWith("", {}, {"kafka.properties.no.such.property=1"});
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("no.such.property"), std::string::npos) << p.status();
  auto s = LoadWith("", {}, {"kafka.properties.sasl.password=hunter2", "kafka.properties.security.protocol=carrier"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("security.protocol"), std::string::npos) << s.status();
  EXPECT_EQ(s.status().message().find("hunter2"), std::string::npos) << s.status();
  // Properties that would take idempotence or acks=all from our producers stop start-up here,
  // a usage error naming them (the producers refuse them too, later, as a failure).
  // Each is named with where it was set (they were all 'kafka.properties', with no origin).
  for (const std::string bad : {"kafka.properties.enable.idempotence=false", "kafka.properties.acks=1",
                                "kafka.properties.request.required.acks=0"}) {
    auto i = LoadWith("", {}, {bad, "kafka.properties.linger.ms=5"});
    ASSERT_FALSE(i.ok()) << bad;
    const std::string key = bad.substr(0, bad.find('='));
    EXPECT_NE(i.status().message().find(key + " (--set): kafka.properties result in enable.idempotence="),
              std::string::npos)
        << i.status();
  }
  auto env = LoadWith("", {{"GSAU_KAFKA_PROPERTY_ENABLE_IDEMPOTENCE", "false"}}, {});
  ASSERT_FALSE(env.ok());
  EXPECT_NE(env.status().message().find(
                "kafka.properties.enable.idempotence (environment GSAU_KAFKA_PROPERTY_ENABLE_IDEMPOTENCE): "),
            std::string::npos)
      << env.status();
  EXPECT_TRUE(LoadWith("", {}, {"kafka.properties.acks=all"}).ok());
  // A transactional producer refuses every record sent outside a transaction: the publisher and
  // the dead-letter path retried for ever.
  auto t = LoadWith("", {}, {"kafka.properties.transactional.id=gsau"});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("kafka.properties.transactional.id (--set): kafka.properties set "
                                      "transactional.id: gsau's producers must be idempotent, not transactional"),
            std::string::npos)
      << t.status();
  // A partitioner that ignores the key spread an id's embedding records over partitions (a stale
  // one kept by compaction in each); the ones that hash the key are taken.
  auto random = LoadWith("", {}, {"kafka.properties.partitioner=random"});
  ASSERT_FALSE(random.ok());
  EXPECT_NE(random.status().message().find("kafka.properties.partitioner (--set): kafka property 'partitioner' = "
                                           "random places a key's records on any partition"),
            std::string::npos)
      << random.status();
  EXPECT_TRUE(LoadWith("", {}, {"kafka.properties.partitioner=consistent_random"}).ok());
  // A misspelt secret is unknown to librdkafka, and so to the redaction: its value is not shown.
  auto typo = LoadWith("", {{"GSAU_KAFKA_PROPERTY_SASL_PASWORD", "hunter2"}}, {});
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("'sasl.pasword'"), std::string::npos) << typo.status();
  EXPECT_EQ(typo.status().message().find("hunter2"), std::string::npos) << typo.status();
  auto bad_value = LoadWith("", {}, {"kafka.properties.linger.ms=soon"});
  ASSERT_FALSE(bad_value.ok());
  EXPECT_NE(bad_value.status().message().find("'linger.ms' = 'soon'"), std::string::npos) << bad_value.status();
}

// A key given twice in one map: yaml-cpp keeps the last, and the other value was dropped unseen.
TEST(ConfigTest, AKeyGivenTwiceInTheFileIsAnError) {
  TempDir dir;
  WriteFile(dir.File("twice.yaml"), "ingest:\n  batch_max_events: 10\n  batch_max_events: 20\n");
  auto twice = LoadWith(dir.File("twice.yaml"), {}, {});
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.status().message(), "ingest.batch_max_events (file " + dir.File("twice.yaml") + "): given twice");
  WriteFile(dir.File("props.yaml"), "kafka:\n  properties:\n    linger.ms: 5\n    linger.ms: 6\n");
  auto props = LoadWith(dir.File("props.yaml"), {}, {});
  ASSERT_FALSE(props.ok());
  EXPECT_NE(props.status().message().find("kafka.properties.linger.ms"), std::string::npos) << props.status();
  WriteFile(dir.File("once.yaml"), "ingest:\n  batch_max_events: 10\nstate:\n  sync: True\n");
  auto once = LoadWith(dir.File("once.yaml"), {}, {"ingest.batch_max_events=30"});
  ASSERT_TRUE(once.ok()) << once.status();
  EXPECT_EQ(once->ingest.batch_max_events, 30) << "--set over the file is not a repeat";
  EXPECT_TRUE(once->state.sync) << "YAML's True";
}

// A directory given as the file failed with the stream's own words and exit 1, not as a
// configuration error naming it. A pipe (--config <(envsubst < f)) reads as a file does.
TEST(ConfigTest, ADirectoryGivenAsTheFileIsNamedAndAPipeReads) {
  TempDir dir;
  const std::string fifo = dir.File("pipe.yaml");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] { WriteFile(fifo, "ingest:\n  batch_max_events: 77\n"); });
  auto piped = LoadWith(fifo, {}, {});
  writer.join();
  ASSERT_TRUE(piped.ok()) << piped.status();
  EXPECT_EQ(piped->ingest.batch_max_events, 77);
  auto c = LoadWith(dir.path().string(), {}, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(), "config file '" + dir.path().string() + "' is a directory");
}

// A file that cannot be opened (a socket: refused even to root, unlike a mode-000 file) is said
// to be unreadable, with the reason; yaml-cpp's own report read "is not valid YAML: bad file".
TEST(ConfigTest, AFileThatCannotBeOpenedIsNamedWithTheReason) {
  TempDir dir;
  const std::string path = dir.File("socket.yaml");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  auto c = LoadWith(path, {}, {});
  ::close(fd);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message().rfind("config file '" + path + "' cannot be read: ", 0), 0u) << c.status();
  EXPECT_EQ(c.status().message().find("YAML"), std::string::npos) << c.status();
}

// The state and checkpoint directories, and the CSV's folder, are checked against the file
// system at start-up: a file there made every checkpoint fail minutes later as an I/O error that
// named no field (and a state under a file failed with exit 1, not as a configuration error).
TEST(ConfigTest, AFileWhereADirectoryBelongsIsNamedByItsField) {
  TempDir dir;
  const std::string file = dir.File("plain");
  WriteFile(file, "x");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"learner.checkpoint_dir=" + file},
       "learner.checkpoint_dir (--set): must be a directory (created when missing): '" + file + "' is a file"},
      {{"learner.checkpoint_dir=" + file + "/"},
       "learner.checkpoint_dir (--set): must be a directory (created when missing): '" + file + "/' is a file"},
      {{"learner.checkpoint_dir=" + file + "/ck"},
       "learner.checkpoint_dir (--set): must be a directory (created when missing): '" + file +
           "' on its way is a file"},
      {{"state.path=" + file + "/a/b"},
       "state.path (--set): must be a directory (created when missing): '" + file + "' on its way is a file"},
      {{"learner.prequential_csv=" + dir.path().string()},
       "learner.prequential_csv (--set): must be a file, got the directory '" + dir.path().string() + "'"},
      {{"learner.prequential_csv=" + file + "/p.csv"},
       "learner.prequential_csv (--set): its folder must be a directory: '" + file + "' is a file"},
  };
  for (const auto& [sets, message] : cases) {
    auto c = LoadWith("", {}, sets);
    ASSERT_FALSE(c.ok()) << sets[0];
    EXPECT_EQ(c.status().message(), message);
  }
  // Missing directories are fine: start-up creates them.
  auto ok = LoadWith("", {}, {"state.path=" + dir.File("new/state"), "learner.checkpoint_dir=" + dir.File("new/ck"),
                              "learner.prequential_csv=" + dir.File("new/p.csv")});
  EXPECT_TRUE(ok.ok()) << ok.status();
  // Not checked for a command that does not write them (gsau replay: a file named like the
  // default state directory in its working directory stopped it).
  for (const auto& [sets, message] : cases) {
    LoadInput in;
    in.overrides = sets;
    in.directory_checks = LoadInput::DirectoryChecks::kNone;
    auto c = Load(in);
    EXPECT_TRUE(c.ok()) << sets[0] << ": " << c.status();
    // gsau ingest writes the state only: the learner's paths are not held against it.
    in.directory_checks = LoadInput::DirectoryChecks::kState;
    c = Load(in);
    EXPECT_EQ(c.ok(), sets[0].rfind("state.path", 0) != 0) << sets[0] << ": " << c.status();
  }
}

// A command's own flags (gsau run --state) are applied last and named as the source.
TEST(ConfigTest, ACommandsFlagsComeLastAndAreNamed) {
  LoadInput in;
  in.overrides = {"state.path=/data/state"};
  in.flags = {{"learner.checkpoint_dir", "/data/state/ckpt", "--checkpoints"}};
  auto c = Load(in);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("learner.checkpoint_dir (--checkpoints): must not lie inside state.path"),
            std::string::npos)
      << c.status();
  in.flags = {{"state.path", "/elsewhere", "--state"}, {"learner.checkpoint_dir", "/data/state/ckpt", "--checkpoints"}};
  c = Load(in);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state.path, "/elsewhere") << "over --set";
}

// The consumer's own settings are not taken from kafka.properties: applied after ingest's, they
// changed the consumer without a word (auto.offset.reset=latest skipped records at a reset).
TEST(ConfigTest, TheConsumersOwnSettingsAreRefusedAsProperties) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"kafka.properties.auto.offset.reset=latest", "kafka.properties.auto.offset.reset (--set): is set by gsau's "
                                                    "consumer and cannot be changed here: ingest starts each "
                                                    "partition at the state's offset"},
      {"kafka.properties.group.id=other", "kafka.properties.group.id (--set): is set by gsau's consumer and cannot "
                                          "be changed here: set ingest.group_id"},
      {"kafka.properties.enable.auto.commit=true", "kafka.properties.enable.auto.commit (--set): is set by"},
      {"kafka.properties.enable.auto.offset.store=true", "kafka.properties.enable.auto.offset.store (--set): is set"},
  };
  for (const auto& [set, message] : cases) {
    auto c = LoadWith("", {}, {set});
    ASSERT_FALSE(c.ok()) << set;
    EXPECT_EQ(c.status().message().rfind(message, 0), 0u) << c.status();
  }
  EXPECT_TRUE(LoadWith("", {}, {"kafka.properties.fetch.max.bytes=1048576"}).ok());
}

// Properties that gsau sets from its own keys are refused: applied after them, they won without a
// word (bootstrap.servers beat --bootstrap, and sent `gsau demo`'s synthetic clicks, meant for its
// embedded broker, to the brokers it named).
TEST(ConfigTest, PropertiesSetFromTheirOwnKeysAreRefused) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"kafka.properties.bootstrap.servers=b:9092",
       "kafka.properties.bootstrap.servers (--set): is set from kafka.bootstrap_servers (or --bootstrap), unset "
       "here; set that instead"},
      {"kafka.properties.bootstrap.servers=", "kafka.properties.bootstrap.servers (--set): is set from"},
      {"kafka.properties.metadata.broker.list=b:9092",
       "kafka.properties.metadata.broker.list (--set): is set from kafka.bootstrap_servers"},
      {"kafka.properties.client.id=x", "kafka.properties.client.id (--set): is set from kafka.client_id ('gsau')"},
  };
  for (const auto& [set, message] : cases) {
    auto c = LoadWith("", {}, {set});
    ASSERT_FALSE(c.ok()) << set;
    EXPECT_EQ(c.status().message().rfind(message, 0), 0u) << c.status();
  }
  // Said again with the key's own value: nothing changes, nothing to refuse.
  EXPECT_TRUE(LoadWith("", {}, {"kafka.bootstrap_servers=b:9092", "kafka.properties.bootstrap.servers=b:9092",
                                "kafka.properties.client.id=gsau"})
                  .ok());
  EXPECT_FALSE(LoadWith("", {}, {"kafka.bootstrap_servers=b:9092", "kafka.properties.bootstrap.servers=c:9092"}).ok());
  auto env = LoadWith("", {{"GSAU_KAFKA_PROPERTY_BOOTSTRAP_SERVERS", "b:9092"}}, {});
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().message().rfind("kafka.properties.bootstrap.servers (environment "
                                         "GSAU_KAFKA_PROPERTY_BOOTSTRAP_SERVERS): is set from",
                                         0),
            0u)
      << env.status();
  // The consumer's own isolation level may be said again; another is refused.
  EXPECT_TRUE(LoadWith("", {}, {"kafka.properties.isolation.level=read_committed"}).ok());
  EXPECT_FALSE(LoadWith("", {}, {"kafka.properties.isolation.level=read_uncommitted"}).ok());
}

// A Kafka property librdkafka refuses is named with where it was set.
TEST(ConfigTest, ABadKafkaPropertyIsNamedWithItsSource) {
  auto env = LoadWith("", {{"GSAU_KAFKA_PROPERTY_BOGUS_THING", "1"}}, {});
  ASSERT_FALSE(env.ok());
  EXPECT_EQ(env.status().message().rfind("kafka.properties.bogus.thing (environment GSAU_KAFKA_PROPERTY_BOGUS_THING): ",
                                         0),
            0u)
      << env.status();
  auto set = LoadWith("", {}, {"kafka.properties.linger.ms=soon"});
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().message().rfind("kafka.properties.linger.ms (--set): ", 0), 0u) << set.status();
}

// Values each field accepts alone but not together: named, with the rule, before anything starts.
// ... and where its value came from, as the rules of single fields do (they left it out).
TEST(ConfigTest, RulesAcrossFieldsNameTheFieldToChange) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"ingest.queue_capacity=500"},
       "ingest.queue_capacity (--set): must be at least ingest.batch_max_events (1000, the default), got 500: ingest "
       "waits for room for a whole batch"},
      {{"ingest.batch_max_events=200000"},
       "ingest.queue_capacity: must be at least ingest.batch_max_events (200000, from --set), got 100000: ingest "
       "waits for room for a whole batch"},
      {{"learner.embedding_dim=63"},
       "learner.embedding_dim (--set): must be even (the sequence encoder's 2 attention heads split it), got 63"},
      {{"publisher.user_refresh_s=59"},
       "publisher.user_refresh_s (--set): must be 0 (off) or at least 60 (each refresh publishes every user of the "
       "state again), got 59"},
      {{"topics.replication_factor=0"},
       "topics.replication_factor (--set): must be -1 (the brokers' default) or at least 1, got 0"},
      {{"learner.replay_ratio=1"},
       "learner.replay_ratio (--set): must be below 1 (at 1 no fresh click is ever trained on), got 1"},
      {{"topics.dead_letter=clicks"},
       "topics.dead_letter (--set): must differ from topics.clicks (both 'clicks', the default)"},
      {{"topics.clicks=^clicks"},
       "topics.clicks (--set): must be a Kafka topic name (1-249 of a-z, A-Z, 0-9, '.', '_', '-'; not '.' or "
       "'..'), got '^clicks'"},
      {{"topics.user_embeddings=user embeddings"},
       "topics.user_embeddings (--set): must be a Kafka topic name (1-249 of a-z, A-Z, 0-9, '.', '_', '-'; not "
       "'.' or '..'), got 'user embeddings'"},
      {{"topics.dead_letter=.."},
       "topics.dead_letter (--set): must be a Kafka topic name (1-249 of a-z, A-Z, 0-9, '.', '_', '-'; not '.' or "
       "'..'), got '..'"},
      {{"topics.item_embeddings=" + std::string(250, 'x')},
       "topics.item_embeddings (--set): must be a Kafka topic name (1-249 of a-z, A-Z, 0-9, '.', '_', '-'; not "
       "'.' or '..'), got '" + std::string(250, 'x') + "'"},
      {{"topics.item_embeddings=u", "topics.user_embeddings=u"},
       "topics.item_embeddings (--set): must differ from topics.user_embeddings (both 'u', from --set)"},
      {{"learner.batch_size=1", "learner.replay_ratio=0.6"},
       "learner.replay_ratio (--set): leaves no fresh sample in a batch of learner.batch_size 1 (from --set; "
       "batch_size x (1 - replay_ratio) must round to at least 1; once replay holds data no fresh click would be "
       "trained on), got 0.6"},
      {{"metrics.listen_address=::1"},
       "metrics.listen_address (--set): expected host:port with an IPv6 host in brackets ([::1]:9464), got '::1'"},
      {{"metrics.listen_address=foo"}, "metrics.listen_address (--set): expected host:port, got 'foo'"},
      {{"metrics.listen_address=http://0.0.0.0:9464/metrics"},
       "metrics.listen_address (--set): expected host:port without a scheme or path (e.g. 0.0.0.0:9464), got "
       "'http://0.0.0.0:9464/metrics'"},
      {{"metrics.listen_address=127.0.0.1:99999"},
       "metrics.listen_address (--set): the port must be a number in [0, 65535], got '127.0.0.1:99999'"},
      {{"metrics.listen_address=:http"},
       "metrics.listen_address (--set): the port must be a number in [0, 65535], got ':http'"},
      {{"state.path=/data", "learner.checkpoint_dir=/data/checkpoints"},
       "learner.checkpoint_dir (--set): must not lie inside state.path ('/data'), got '/data/checkpoints': a "
       "rollback moves the state directory aside and restores a checkpoint into it"},
      {{"state.path=/data/./state", "learner.checkpoint_dir=/data/state/"},
       "learner.checkpoint_dir (--set): must not lie inside state.path ('/data/./state'), got "
       "'/data/state/': a rollback moves the state directory aside and restores a checkpoint into it"},
      {{"ingest.session_timeout_ms=5999"}, "ingest.session_timeout_ms (--set): must be in [6000, 300000], got 5999"},
  };
  for (const auto& [sets, message] : cases) {
    auto c = LoadWith("", {}, sets);
    ASSERT_FALSE(c.ok()) << sets[0];
    EXPECT_EQ(c.status().message(), message);
  }
  EXPECT_TRUE(LoadWith("", {}, {"ingest.queue_capacity=1000", "learner.replay_ratio=0.99"}).ok());
  // Validate() alone knows no origins: it says none (not "the default").
  Config c;
  c.ingest.batch_max_events = 200000;
  EXPECT_EQ(Validate(c).message(),
            "ingest.queue_capacity: must be at least ingest.batch_max_events (200000), got 100000: ingest waits for "
            "room for a whole batch");
  EXPECT_TRUE(
      LoadWith("", {}, {"topics.clicks=Shop_clicks.v2-eu", "topics.dead_letter=" + std::string(249, 'd')}).ok());
  EXPECT_TRUE(LoadWith("", {}, {"learner.batch_size=2", "learner.replay_ratio=0.75"}).ok()) << "0.5 rounds to 1";
  EXPECT_TRUE(LoadWith("", {}, {"state.path=/data/state", "learner.checkpoint_dir=/data/state-checkpoints"}).ok())
      << "a sibling whose name starts alike";
  EXPECT_TRUE(LoadWith("", {}, {"state.path=/data/state", "learner.checkpoint_dir=/data"}).ok())
      << "holding the state: a rollback moves only ckpt-* entries";
  for (const std::string a : {"", "127.0.0.1:0", ":9464", "[::1]:9464", "0.0.0.0:65535"}) {
    EXPECT_TRUE(LoadWith("", {}, {"metrics.listen_address=" + a}).ok()) << a;
  }
}

// A variable named like a field but matching none is probably a typo: reported (with the
// nearest field), while other GSAU_ variables and kafka properties are left alone.
TEST(ConfigTest, EnvironmentVariablesNamedLikeFieldsButMatchingNoneAreReported) {
  LoadInput in;
  in.env = {{"GSAU_LEARNER_BATCHSIZE", "64"},  {"GSAU_LEARNER_BATCH_SIZE", "64"},
            {"GSAU_SOURCE_DIR", "/src"},        {"GSAU_KAFKA_PROPERTY_SASL_USERNAME", "a"},
            {"GSAU_TOPICS_CLICK", "c"},         {"HOME", "/root"},
            {"GSAU_TOPIC_CLICKS", "c"},         {"GSAU_KAFKA_PROPERTIES_SASL_PASSWORD", "p"},
            {"GSAU_TEST_KAFKA_DIR", "/tmp/kb"},  {"GSAU_KAFKA_PROPERTIES", "acks=all"},
            {"GSAU_INGEST", "5"},               {"GSAU_KAFKA_VERSION", "4.1.1"}};  // scripts/kafka_fetch.sh's
  EXPECT_EQ(UnknownEnvironment(in),
            (std::vector<std::string>{
                "GSAU_LEARNER_BATCHSIZE (did you mean GSAU_LEARNER_BATCH_SIZE?)",
                "GSAU_TOPICS_CLICK (did you mean GSAU_TOPICS_CLICKS?)",
                "GSAU_TOPIC_CLICKS (did you mean GSAU_TOPICS_CLICKS?)",
                "GSAU_KAFKA_PROPERTIES_SASL_PASSWORD (did you mean GSAU_KAFKA_PROPERTY_SASL_PASSWORD?)",
                "GSAU_KAFKA_PROPERTIES (did you mean GSAU_KAFKA_PROPERTY_<NAME>, one variable a property?)",
                "GSAU_INGEST (did you mean one of the section's fields, GSAU_INGEST_<FIELD>?)"}));
  EXPECT_TRUE(Load(in).ok()) << "not an error";
}

// The range the docs give a number is the one start-up holds it to: just outside it is refused,
// naming that range, and its ends are not refused as out of it. Fields a rule narrows further
// say so in their range.
TEST(ConfigTest, TheDocumentedRangesAreTheOnesEnforced) {
  int checked = 0;
  for (const auto& f : Fields()) {
    if ((f.type != "int" && f.type != "float") || f.range.empty()) continue;
    if (f.range.front() != '[' || f.range.back() != ']') continue;  // narrowed: below
    const double least = std::stod(f.range.substr(1, f.range.find(',') - 1));
    const double most = std::stod(f.range.substr(f.range.find(',') + 1));
    const auto text = [&](double v) {
      std::ostringstream out;
      out << std::setprecision(17) << v;
      return out.str();
    };
    const double step = f.type == "int" ? 1.0 : std::max(1e-6, least * 1e-3);
    for (const double outside : {least - step, most + step}) {
      auto refused = LoadWith("", {}, {f.key + "=" + text(outside)});
      ASSERT_FALSE(refused.ok()) << f.key << "=" << text(outside);
      EXPECT_NE(refused.status().message().find(f.key + " (--set): must be in " + f.range), std::string::npos)
          << refused.status();
    }
    for (const double end : {least, most}) {
      auto taken = LoadWith("", {}, {f.key + "=" + text(end)});
      if (!taken.ok()) {  // (a rule across fields may refuse it, e.g. a queue below a batch)
        EXPECT_EQ(taken.status().message().find("must be in"), std::string::npos) << taken.status();
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 25);
  EXPECT_NE(FieldsMarkdown().find("| `state.session_length` | `GSAU_STATE_SESSION_LENGTH` | int in [50, 100000] |"),
            std::string::npos);
  // The narrowed ones, at the edges their range text draws.
  EXPECT_FALSE(LoadWith("", {}, {"learner.replay_ratio=1"}).ok());
  EXPECT_TRUE(LoadWith("", {}, {"learner.replay_ratio=0.99"}).ok());
  EXPECT_FALSE(LoadWith("", {}, {"publisher.user_refresh_s=59"}).ok());
  EXPECT_TRUE(LoadWith("", {}, {"publisher.user_refresh_s=60"}).ok());
  EXPECT_TRUE(LoadWith("", {}, {"publisher.user_refresh_s=0"}).ok());
  EXPECT_FALSE(LoadWith("", {}, {"learner.embedding_dim=63"}).ok());
  EXPECT_TRUE(LoadWith("", {}, {"learner.embedding_dim=4096"}).ok());
  std::map<std::string, std::string> ranges;
  for (const auto& f : Fields()) ranges[f.key] = f.range;
  EXPECT_EQ(ranges["learner.replay_ratio"], "[0, 1)");
  EXPECT_EQ(ranges["publisher.user_refresh_s"], "[60, 31536000] or 0");
}

TEST(ConfigTest, DocsListEveryField) {
  std::ifstream in(gsau::testing::SourceDir() + "/docs/CONFIG.md");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(ss.str().find(FieldsMarkdown()), std::string::npos)
      << "docs/CONFIG.md is out of date: regenerate its table with `build/gsau replay --help-config`";
}

}  // namespace
}  // namespace gsau::config
