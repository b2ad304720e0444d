// `gsau replay` end to end against the real broker: read back with librdkafka and with kcat.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <sstream>
#include <string>
#include <vector>

#include "gsau/common/clock.h"
#include "gsau/kafka/admin.h"
#include "gsau/replay/replay.h"
#include "kafka_broker.h"
#include "temp_dir.h"

namespace gsau {
namespace {

using gsau::testing::ConsumeAll;
using gsau::testing::KafkaBootstrap;
using gsau::testing::RunCommand;
using gsau::testing::TempDir;
using gsau::testing::UniqueTopic;

struct Generated {
  std::string path;
  // user -> its items in time order
  std::map<std::string, std::vector<std::string>> by_user;
  int64_t count = 0;
};

// A TSV file whose rows are NOT in time order, with ties, so replay has to sort.
Generated MakeFile(const TempDir& dir) {
  Generated g;
  g.path = dir.File("clicks.tsv");
  std::ostringstream tsv;
  tsv << "user_id\titem_id\ttimestamp\n";
  std::vector<std::tuple<int64_t, std::string, std::string>> rows;
  for (int u = 0; u < 37; ++u) {
    for (int k = 0; k < 1 + u % 9; ++k) {
      rows.emplace_back(1700000000 + (u * 7919 + k * 104729) % 5000 + k * 10000, "user-" + std::to_string(u),
                        "item-" + std::to_string((u * 31 + k * 17) % 101));
    }
  }
  std::vector<std::tuple<int64_t, std::string, std::string>> sorted = rows;
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return std::tie(std::get<0>(a), std::get<1>(a)) < std::tie(std::get<0>(b), std::get<1>(b));
  });
  for (const auto& [ts, u, i] : sorted) g.by_user[u].push_back(i);
  // Write in reverse order.
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
    tsv << std::get<1>(*it) << '\t' << std::get<2>(*it) << '\t' << std::get<0>(*it) << '\n';
  }
  // Within one user, reverse file order must not matter either: times are distinct per user.
  g.count = static_cast<int64_t>(rows.size());
  gsau::testing::WriteFile(g.path, tsv.str());
  return g;
}

std::string Gsau() { return gsau::testing::BinaryDir() + "/gsau"; }

std::string ReplayCmd(const std::string& file, const std::string& topic) {
  return Gsau() + " replay --no-progress --data " + file + " --bootstrap " + KafkaBootstrap() + " --topic " + topic +
         " 2>&1";
}

TEST(ReplayKafkaTest, EveryEventArrivesKeyedOrderedAndWellFormed) {
  TempDir dir;
  const Generated g = MakeFile(dir);
  const std::string topic = UniqueTopic("replay");
  std::string out;
  ASSERT_EQ(RunCommand(ReplayCmd(g.path, topic), &out), 0) << out;
  EXPECT_NE(out.find("replayed " + std::to_string(g.count) + " events"), std::string::npos) << out;

  const auto records = ConsumeAll(KafkaBootstrap(), topic, g.count);
  ASSERT_EQ(static_cast<int64_t>(records.size()), g.count);
  std::map<std::string, std::vector<std::string>> seen;
  std::map<std::string, int32_t> partition_of;
  std::map<std::string, int64_t> last_ts;
  for (const auto& r : records) {
    const auto j = nlohmann::json::parse(r.value);
    ASSERT_TRUE(j["user_id"].is_string() && j["item_id"].is_string() && j["ts"].is_number_integer()) << r.value;
    EXPECT_EQ(j["event"], "click");
    EXPECT_EQ(r.key, j["user_id"].get<std::string>()) << "keyed by user";
    const int64_t ts = j["ts"].get<int64_t>();
    EXPECT_GE(ts, 1700000000000) << "seconds were converted to ms";
    EXPECT_EQ(ts % 1000, 0);
    // One user's events stay in one partition; consumed per partition in offset order.
    auto [it, fresh] = partition_of.emplace(r.key, r.partition);
    EXPECT_EQ(it->second, r.partition);
    if (!fresh) {
      EXPECT_GE(ts, last_ts[r.key]) << "per-key event-time order";
    }
    last_ts[r.key] = ts;
    seen[r.key].push_back(j["item_id"].get<std::string>());
  }
  EXPECT_EQ(seen, g.by_user);
}

TEST(ReplayKafkaTest, KcatReadsTheSameEvents) {
  TempDir dir;
  const Generated g = MakeFile(dir);
  const std::string topic = UniqueTopic("replay-kcat");
  std::string out;
  ASSERT_EQ(RunCommand(ReplayCmd(g.path, topic), &out), 0) << out;
  ASSERT_EQ(RunCommand("kcat -C -b " + KafkaBootstrap() + " -t " + topic + " -e -u -q -f '%k\\t%p\\t%s\\n' 2>&1", &out),
            0)
      << out;
  std::istringstream lines(out);
  std::string line;
  std::map<std::string, std::vector<std::string>> seen;
  int64_t n = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    const auto t1 = line.find('\t');
    const auto t2 = line.find('\t', t1 + 1);
    ASSERT_NE(t2, std::string::npos) << line;
    const auto j = nlohmann::json::parse(line.substr(t2 + 1));
    EXPECT_EQ(line.substr(0, t1), j["user_id"].get<std::string>());
    seen[j["user_id"].get<std::string>()].push_back(j["item_id"].get<std::string>());
    ++n;
  }
  EXPECT_EQ(n, g.count);
  EXPECT_EQ(seen, g.by_user) << "kcat prints partitions one after another, so per-user order holds";
}

// A dataset's event column (RetailRocket's view/addtocart/transaction) goes out as each click's
// type, so that ingest.accepted_event_types can choose among them; every one was a "click".
TEST(ReplayKafkaTest, ADatasetsEventTypesGoOutWithTheirClicks) {
  TempDir dir;
  gsau::testing::WriteFile(dir.File("events.csv"), "timestamp,visitorid,event,itemid,transactionid\n"
                                                   "1433221332117,v1,view,i1,\n"
                                                   "1433221332118,v1,addtocart,i1,\n"
                                                   "1433221332119,v1,transaction,i1,7\n"
                                                   "1433221332120,v2,view,i2,\n");
  const std::string topic = UniqueTopic("replay-types");
  std::string out;
  ASSERT_EQ(RunCommand(ReplayCmd(dir.File("events.csv"), topic), &out), 0) << out;
  const auto records = ConsumeAll(KafkaBootstrap(), topic, 4);
  ASSERT_EQ(records.size(), 4u);
  std::map<std::string, std::vector<std::string>> types;
  for (const auto& r : records) {
    const auto j = nlohmann::json::parse(r.value);
    types[r.key].push_back(j["event"].get<std::string>());
  }
  EXPECT_EQ(types["v1"], (std::vector<std::string>{"view", "addtocart", "transaction"}));
  EXPECT_EQ(types["v2"], (std::vector<std::string>{"view"}));
  EXPECT_EQ(out.find("does not accept"), std::string::npos) << "every type is accepted by default: " << out;
  // Types the configured ingest leaves out are said before sending (a list spelt "purchase" for
  // "transaction" skipped every event in silence), and so are ids ingest dead-letters.
  const auto replay_accepting = [&](const std::string& file) {
    std::string said;
    EXPECT_EQ(RunCommand(Gsau() + " replay --no-progress --set 'ingest.accepted_event_types=[transaction, purchase]' "
                                  "--data " + file + " --bootstrap " + KafkaBootstrap() + " --topic " +
                             UniqueTopic("replay-skip") + " 2>&1",
                         &said),
              0)
        << said;
    return said;
  };
  out = replay_accepting(dir.File("events.csv"));
  EXPECT_NE(out.find("replay: 3 of 4 events have a type ingest.accepted_event_types [transaction, purchase] does not "
                     "accept (addtocart 1, view 2): ingest skips them"),
            std::string::npos)
      << out;
  gsau::testing::WriteFile(dir.File("long.csv"), "timestamp,visitorid,event,itemid\n1433221332121,v3,transaction," +
                                                     std::string(300, 'x') + "\n");
  out = replay_accepting(dir.File("long.csv"));
  EXPECT_NE(out.find("replay: 1 of 1 events have an id over 256 bytes, which ingest dead-letters as bad_id (the "
                     "first: user 2 bytes, item 300 bytes)"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("does not accept"), std::string::npos) << out;
  // A Latin-1 file's ids read offline, but their events are not valid JSON: said before sending.
  gsau::testing::WriteFile(dir.File("latin1.csv"), "timestamp,visitorid,event,itemid\n"
                                                   "1433221332121,Jos\xE9,transaction,i1\n"
                                                   "1433221332122,v4,transaction,i1\n");
  out = replay_accepting(dir.File("latin1.csv"));
  EXPECT_NE(out.find("replay: 1 of 2 events have an id or type that is not UTF-8, which ingest dead-letters as "
                     "not_json (the first: user Jos\\xE9)"),
            std::string::npos)
      << out;
}

TEST(ReplayKafkaTest, UserLinesWithoutTimesLeaveTsToKafkaAndKeepOrder) {
  TempDir dir;
  gsau::testing::WriteFile(dir.File("lines.txt"), "1 10 11 12\n2 20 21\n3 30\n");
  const std::string topic = UniqueTopic("replay-lines");
  std::string out;
  ASSERT_EQ(RunCommand(ReplayCmd(dir.File("lines.txt"), topic), &out), 0) << out;
  const auto records = ConsumeAll(KafkaBootstrap(), topic, 6);
  ASSERT_EQ(records.size(), 6u);
  std::map<std::string, std::vector<std::string>> seen;
  for (const auto& r : records) {
    const auto j = nlohmann::json::parse(r.value);
    EXPECT_FALSE(j.contains("ts")) << r.value;
    EXPECT_GT(r.timestamp_ms, 1700000000000) << "the Kafka timestamp stands in";
    seen[r.key].push_back(j["item_id"].get<std::string>());
  }
  EXPECT_EQ(seen["1"], (std::vector<std::string>{"10", "11", "12"}));
  EXPECT_EQ(seen["2"], (std::vector<std::string>{"20", "21"}));
}

// --from-now: each event carries the time it was sent, not the file's (2020 here), so that a
// live pipeline's freshness measures the pipeline; the order and the ids are the file's.
TEST(ReplayKafkaTest, FromNowSendsEachEventWithItsSendTime) {
  TempDir dir;
  gsau::testing::WriteFile(dir.File("old.tsv"),
                           "user_id\titem_id\ttimestamp\nu1\ti1\t1577836800\nu1\ti2\t1577836801\nu2\ti3\t1577836802\n");
  const std::string topic = UniqueTopic("replay-now");
  std::string out;
  const int64_t before = SystemClock::Get().NowMs();
  ASSERT_EQ(RunCommand(Gsau() + " replay --no-progress --from-now --rate 20 --data " + dir.File("old.tsv") +
                           " --bootstrap " + KafkaBootstrap() + " --topic " + topic + " 2>&1",
                       &out),
            0)
      << out;
  const int64_t after = SystemClock::Get().NowMs();
  const auto records = ConsumeAll(KafkaBootstrap(), topic, 3);
  ASSERT_EQ(records.size(), 3u);
  std::vector<std::string> items;
  int64_t last = 0;
  for (const auto& r : records) {
    const auto j = nlohmann::json::parse(r.value);
    const int64_t ts = j.at("ts").get<int64_t>();
    EXPECT_GE(ts, before) << r.value;
    EXPECT_LE(ts, after) << r.value;
    if (r.key == "u1") {
      EXPECT_GE(ts, last) << "in send order";
      last = ts;
    }
    items.push_back(r.key + ":" + j.at("item_id").get<std::string>());
  }
  std::sort(items.begin(), items.end());
  EXPECT_EQ(items, (std::vector<std::string>{"u1:i1", "u1:i2", "u2:i3"}));
}

// Times ingest would dead-letter (here: sequence numbers, read as seconds, so 1973 is far off)
// are said before sending; with the floor lifted (ingest.min_event_time_s=0) nothing is said.
TEST(ReplayKafkaTest, TimesIngestWouldRefuseAreReported) {
  TempDir dir;
  gsau::testing::WriteFile(dir.File("seq.tsv"), "user_id\titem_id\ttimestamp\nu1\ti1\t1\nu1\ti2\t2\nu2\ti1\t3\n");
  std::string out;
  ASSERT_EQ(RunCommand(ReplayCmd(dir.File("seq.tsv"), UniqueTopic("replay-seq")), &out), 0) << out;
  EXPECT_NE(out.find("3 of 3 events have times ingest dead-letters as bad_time (3 before "
                     "ingest.min_event_time_s = 100000000 s, 0 after 2100; the first: user u1 at 1000 ms)"),
            std::string::npos)
      << out;
  ASSERT_EQ(RunCommand(Gsau() + " replay --no-progress --set ingest.min_event_time_s=0 --data " + dir.File("seq.tsv") +
                           " --bootstrap " + KafkaBootstrap() + " --topic " + UniqueTopic("replay-seq0") + " 2>&1",
                       &out),
            0)
      << out;
  EXPECT_EQ(out.find("dead-letters"), std::string::npos) << out;
  // With --limit, what is sent is counted: the first two in time order (it said "3 of 3").
  ASSERT_EQ(RunCommand(Gsau() + " replay --no-progress --limit 2 --data " + dir.File("seq.tsv") + " --bootstrap " +
                           KafkaBootstrap() + " --topic " + UniqueTopic("replay-seq2") + " 2>&1",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("2 of 2 events have times ingest dead-letters"), std::string::npos) << out;
  EXPECT_NE(out.find("replay: 2 events to topic"), std::string::npos) << out;
}

TEST(ReplayKafkaTest, RateLimitIsHonoured) {
  const std::string topic = UniqueTopic("replay-rate");
  std::string out;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(RunCommand(Gsau() + " replay --no-progress --synthetic 300 --rate 200 --bootstrap " + KafkaBootstrap() +
                           " --topic " + topic + " 2>&1",
                       &out),
            0)
      << out;
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(took, 1.4) << "300 events at 200/s take at least 1.5 s";
  EXPECT_EQ(ConsumeAll(KafkaBootstrap(), topic, 300).size(), 300u);
}

// --users and --items shape the synthetic stream (an operator could not make more than its
// 2,000 users): the keys are that many users at most, and with enough events nearly all of them.
TEST(ReplayKafkaTest, SyntheticUsersAndItemsAreThoseAskedFor) {
  const std::string topic = UniqueTopic("replay-shape");
  std::string out;
  ASSERT_EQ(RunCommand(Gsau() + " replay --no-progress --synthetic 20000 --users 5000 --items 300 --bootstrap " +
                           KafkaBootstrap() + " --topic " + topic + " 2>&1",
                       &out),
            0)
      << out;
  std::set<std::string> users, items;
  for (const auto& r : ConsumeAll(KafkaBootstrap(), topic, 20000)) {
    users.insert(r.key);
    const auto v = nlohmann::json::parse(r.value);
    items.insert(v.value("item_id", std::string()));
  }
  EXPECT_GT(users.size(), 4000u);
  EXPECT_LE(users.size(), 5000u);
  EXPECT_GT(items.size(), 200u);
  EXPECT_LE(items.size(), 300u);
  EXPECT_EQ(RunCommand(Gsau() + " replay --data x.tsv --users 5 --bootstrap 127.0.0.1:1 2>&1", &out), 2) << out;
  EXPECT_NE(out.find("shape the --synthetic stream, not a --data file"), std::string::npos) << out;
}

// A stop while replay waits for its next event's time ends it then, without that event: at 0.2
// events/s a Ctrl-C waited up to 5 s and sent one more. Here an event every 50 s: the stop comes
// once a new group has read the first, which took 3.4 s of a 5 s gap in CI beside state_test.
TEST(ReplayKafkaTest, AStopDuringTheWaitForTheNextEventEndsIt) {
  const std::string topic = UniqueTopic("replay-stop");
  kafka::KafkaOptions kafka;
  kafka.bootstrap_servers = KafkaBootstrap();
  ASSERT_TRUE(kafka::EnsureTopics(kafka, {{topic, 1, 1, {}}}, 20000).ok());
  std::vector<data::Interaction> events;
  for (int k = 0; k < 5; ++k) events.push_back({"u" + std::to_string(k), "i1", 1700000000000 + k, k, true});
  replay::ReplayOptions o;
  o.topic = topic;
  o.rate = 0.02;
  o.progress = false;
  std::atomic<bool> stop{false};
  Result<replay::ReplayStats> stats = Status::Internal("not run");
  std::thread t([&] { stats = replay::Replay(events, kafka, o, &stop); });
  // The first event has arrived: replay now waits for the second's time.
  const bool first = ConsumeAll(KafkaBootstrap(), topic, 1, 30000).size() == 1;
  const auto stopped_at = std::chrono::steady_clock::now();
  stop = true;
  t.join();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped_at).count();
  ASSERT_TRUE(first) << "the first event never arrived";
  EXPECT_LT(took, 10.0) << "the stop waited for the next event's time";  // 50 s away
  EXPECT_EQ(stats.status().code(), StatusCode::kAborted);  // a stopped replay says how far it got
  EXPECT_EQ(ConsumeAll(KafkaBootstrap(), topic, 2, 3000).size(), 1u) << "an event produced after the stop";
}

// A delivery that fails (here every one: the topic's max.message.bytes is below a batch) ends
// the replay then, saying how far it got: it went on sending to the end, its bar at 100%, and
// said only at the last flush that something had failed.
TEST(ReplayKafkaTest, AFailedDeliveryEndsTheReplayAtOnceWithItsCounts) {
  const std::string topic = UniqueTopic("replay-refused");
  kafka::KafkaOptions kafka;
  kafka.bootstrap_servers = KafkaBootstrap();
  ASSERT_TRUE(kafka::EnsureTopics(kafka, {{topic, 1, 1, {{"max.message.bytes", "64"}}}}, 20000).ok());
  replay::SyntheticOptions so;
  so.events = 20000;
  const auto events = replay::SyntheticStream(so);
  replay::ReplayOptions o;
  o.topic = topic;
  o.rate = 2000;  // 10 s to the end
  o.progress = false;
  auto r = replay::Replay(events, kafka, o);
  ASSERT_EQ(r.status().code(), StatusCode::kUnavailable) << (r.ok() ? "delivered" : r.status().ToString());
  const std::string m = r.status().message();
  const std::string prefix = "deliveries failed: stopped after sending ";
  ASSERT_EQ(m.rfind(prefix, 0), 0u) << m;
  const int64_t sent = std::stoll(m.substr(prefix.size()));
  EXPECT_LT(sent, 10000) << m;
  EXPECT_NE(m.find(" of 20000 events (0 records delivered, "), std::string::npos) << m;
  EXPECT_NE(m.find("Message size too large"), std::string::npos) << "the cause: " << m;
}

// At a rate, a replay waits for brokers that are away rather than filling librdkafka's queue at
// its rate: with --from-now no event is stamped more than about a second into an outage (before,
// the whole outage's events were stamped as they were queued and sent at its end), and every
// event arrives once the brokers are back.
TEST(ReplayKafkaTest, AtARateItWaitsForBrokersThatAreAway) {
  TempDir dir;
  gsau::testing::PrivateBroker broker(dir.File("broker"), 300);
  kafka::KafkaOptions kafka;
  kafka.bootstrap_servers = broker.bootstrap;
  const std::string topic = "replay-wait";
  ASSERT_TRUE(kafka::EnsureTopics(kafka, {{topic, 1, 1, {}}}, 20000).ok());
  replay::SyntheticOptions so;
  so.events = 2400;
  const auto events = replay::SyntheticStream(so);
  replay::ReplayOptions o;
  o.topic = topic;
  o.progress = false;
  o.rate = 200;  // 12 s without an outage; the cap is 200 records
  o.stamp_send_time = true;
  Result<replay::ReplayStats> stats = Status::Internal("not run");
  std::thread t([&] { stats = replay::Replay(events, kafka, o, nullptr); });
  std::this_thread::sleep_for(std::chrono::seconds(3));
  std::string out;
  ASSERT_TRUE(broker.Run("pause", &out)) << out;
  const int64_t paused_ms = SystemClock::Get().NowMs();
  std::this_thread::sleep_for(std::chrono::seconds(6));
  const int64_t resumed_ms = SystemClock::Get().NowMs();
  ASSERT_TRUE(broker.Run("resume", &out)) << out;
  t.join();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const auto records = ConsumeAll(broker.bootstrap, topic, 2400, 60000);
  ASSERT_EQ(records.size(), 2400u);
  int64_t inside = 0;  // stamped well into the outage: more than 2 s after it began
  for (const auto& r : records) {
    const int64_t ts = nlohmann::json::parse(r.value).at("ts").get<int64_t>();
    if (ts > paused_ms + 2000 && ts < resumed_ms) ++inside;
  }
  EXPECT_EQ(inside, 0) << "events stamped while the broker was away (at 200/s: ~800 without the wait)";
}

// A stop with the brokers away (a broker of its own, paused: the suite's is shared) ends the
// replay within seconds, saying how far it got: Produce waited for room in the full local
// queue, then the final flush for its whole timeout, then the producer's close 30 s more.
TEST(ReplayKafkaTest, AStopWithTheBrokersAwayEndsWithinSeconds) {
  TempDir dir;
  gsau::testing::PrivateBroker broker(dir.File("broker"), 300);
  kafka::KafkaOptions kafka;
  kafka.bootstrap_servers = broker.bootstrap;
  const std::string topic = "replay-away";
  ASSERT_TRUE(kafka::EnsureTopics(kafka, {{topic, 1, 1, {}}}, 20000).ok());
  replay::SyntheticOptions so;
  so.events = 3000000;  // more than the local queue holds (1,000,000 records)
  const auto events = replay::SyntheticStream(so);
  replay::ReplayOptions o;
  o.topic = topic;
  o.progress = false;
  std::atomic<bool> stop{false};
  Result<replay::ReplayStats> stats = Status::Internal("not run");
  std::thread t([&] { stats = replay::Replay(events, kafka, o, &stop); });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::string out;
  ASSERT_TRUE(broker.Run("pause", &out)) << out;
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the queue fills
  const auto stopped_at = std::chrono::steady_clock::now();
  stop = true;
  t.join();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped_at).count();
  ASSERT_EQ(stats.status().code(), StatusCode::kAborted) << (stats.ok() ? "finished" : stats.status().ToString());
  EXPECT_NE(stats.status().message().find(" not (yet) acknowledged"), std::string::npos) << stats.status();
  EXPECT_LT(took, 15.0) << stats.status();
}

}  // namespace
}  // namespace gsau
