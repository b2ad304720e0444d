// The real Kafka broker for integration tests.
//
// Under CTest, the kafka_broker fixture (scripts/kafka_broker.sh) has started one broker for
// the whole run and GSAU_TEST_KAFKA_DIR points at its directory. Run by hand, a test binary
// starts its own broker in a temporary directory and stops it when the process ends (also
// when a test fails).
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace gsau::testing {

// host:port of the shared broker; starts one if needed. Aborts the test binary when no broker
// can be had (an integration test without its broker must fail, not skip).
const std::string& KafkaBootstrap();

// librdkafka's in-process mock cluster (one broker): refusals and delays on demand, for the
// failure paths a real broker will not take on cue. Not the only test of any Kafka path.
class MockCluster {
 public:
  MockCluster();  // fails the test when librdkafka cannot make one
  ~MockCluster();
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  rd_kafka_mock_cluster_t* get() const { return cluster_; }
  std::string bootstrap() const;
  // Creates `topic` (replication 1); fails the test on error.
  void CreateTopic(const std::string& topic, int partitions);

 private:
  rd_kafka_t* host_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};

// A topic name unique to this process and call, so tests never see each other's data.
std::string UniqueTopic(const std::string& prefix);

struct ConsumedRecord {
  std::string key;
  bool null_key = false;  // no key at all (`key` is then empty)
  std::string value;
  bool null_value = false;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // a null value as ""
  std::vector<std::string> null_headers;                      // the keys of those with a null value
};

// Reads every record of `topic` from the beginning until `expected` records arrived or
// `timeout_ms` passed (expected < 0: until every partition reaches its end). With librdkafka.
std::vector<ConsumedRecord> ConsumeAll(const std::string& bootstrap, const std::string& topic, int64_t expected,
                                       int timeout_ms = 30000);

// Sets `topic`'s configs to exactly `configs` (Kafka's AlterConfigs replaces the whole set:
// name every non-default one), for tests that change a topic's limits mid-test. Fails the
// test on error.
void SetTopicConfigs(const std::string& bootstrap, const std::string& topic,
                     const std::vector<std::pair<std::string, std::string>>& configs);

// Deletes the records of `topic`'s `partition` below `offset` (Kafka's DeleteRecords: what
// retention does to old segments). Fails the test on error.
void DeleteRecordsBefore(const std::string& bootstrap, const std::string& topic, int32_t partition, int64_t offset);

// Deletes `topic` (Kafka's DeleteTopics; the broker removes it in the background: EnsureTopics
// of the same name may have to wait for that). Fails the test on error.
void DeleteTopic(const std::string& bootstrap, const std::string& topic);

// Runs a shell command; returns its exit code and fills *output with stdout.
int RunCommand(const std::string& command, std::string* output);

// A broker of one test's own (scripts/kafka_broker.sh in `dir`), for tests that stop or pause
// it: the shared one serves the tests beside them. Throws std::runtime_error when it does not
// start (the test fails); stopped on destruction, and by its watchdog after
// `max_lifetime_s` should the test binary die first.
struct PrivateBroker {
  std::string dir, bootstrap;
  explicit PrivateBroker(const std::string& dir, int max_lifetime_s = 3600);
  ~PrivateBroker();
  PrivateBroker(const PrivateBroker&) = delete;
  PrivateBroker& operator=(const PrivateBroker&) = delete;
  // kafka_broker.sh `verb` (pause, resume, stop) on it; true on exit 0, `output` its stdout.
  bool Run(const std::string& verb, std::string* output = nullptr);
};

}  // namespace gsau::testing
