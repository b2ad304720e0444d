// Metrics, the split, and end-to-end training on a planted sequential pattern (with resume).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "gsau/common/file.h"
#include "gsau/learner/dataset.h"
#include "gsau/learner/metrics.h"
#include "gsau/learner/trainer.h"
#include "temp_dir.h"

namespace gsau::learner {
namespace {

TEST(Metrics, EqualHandComputedValues) {
  // Ranks (0-based) of the target of five users.
  MetricAccumulator acc;
  for (int64_t rank : {0, 3, 7, 12, 60}) acc.Add(rank);
  const auto m = acc.Result();
  EXPECT_EQ(m.count, 5);
  // @5: ranks 0 and 3 hit.
  EXPECT_NEAR(m.Get("recall@5"), 2.0 / 5, 1e-12);
  EXPECT_NEAR(m.Get("ndcg@5"), (1.0 / std::log2(2) + 1.0 / std::log2(5)) / 5, 1e-12);
  EXPECT_NEAR(m.Get("mrr@5"), (1.0 + 1.0 / 4) / 5, 1e-12);
  // @10: + rank 7.
  EXPECT_NEAR(m.Get("recall@10"), 3.0 / 5, 1e-12);
  EXPECT_NEAR(m.Get("ndcg@10"), (1.0 + 1.0 / std::log2(5) + 1.0 / std::log2(9)) / 5, 1e-12);
  EXPECT_NEAR(m.Get("mrr@10"), (1.0 + 1.0 / 4 + 1.0 / 8) / 5, 1e-12);
  // @20: + rank 12; @50: the same (60 misses).
  EXPECT_NEAR(m.Get("recall@20"), 4.0 / 5, 1e-12);
  EXPECT_NEAR(m.Get("ndcg@20"), (1.0 + 1.0 / std::log2(5) + 1.0 / std::log2(9) + 1.0 / std::log2(14)) / 5, 1e-12);
  EXPECT_NEAR(m.Get("mrr@20"), (1.0 + 1.0 / 4 + 1.0 / 8 + 1.0 / 13) / 5, 1e-12);
  EXPECT_NEAR(m.Get("recall@50"), 4.0 / 5, 1e-12);
  EXPECT_EQ(m.Get("nope@3"), -1.0);
  EXPECT_EQ(MetricAccumulator().Result().Get("recall@10"), 0.0);
}

std::vector<data::Interaction> Lines(const std::vector<std::pair<std::string, std::vector<std::string>>>& users) {
  std::vector<data::Interaction> events;
  for (const auto& [u, items] : users) {
    for (size_t t = 0; t < items.size(); ++t) {
      events.push_back({u, items[t], static_cast<int64_t>(t), static_cast<int64_t>(t)});
    }
  }
  return events;
}

// The incremental most-popular ranking against brute-force counts on a growing catalogue.
TEST(Metrics, PopularityRankingEqualsBruteForce) {
  std::mt19937 rng(7);
  const std::vector<int64_t> initial = {3, 0, 5, 3, 0, 1, 5, 2};
  PopularityRanking ranking(initial);
  std::vector<int64_t> clicks = initial;
  auto brute = [&](uint32_t item, bool tied) -> int64_t {
    const int64_t c = item < clicks.size() ? clicks[item] : 0;
    int64_t n = 0;
    for (size_t j = 0; j < clicks.size(); ++j) n += tied ? (clicks[j] == c && j != item) : clicks[j] > c;
    return n;
  };
  std::mt19937_64 draws(1);
  // Zipf-like item choice, new ids now and then (sometimes skipping ids).
  for (int step = 0; step < 5000; ++step) {
    const size_t n = clicks.size();
    uint32_t item;
    if (std::uniform_int_distribution<int>(0, 49)(rng) == 0) {
      item = static_cast<uint32_t>(n + std::uniform_int_distribution<size_t>(0, 2)(rng));
    } else {
      const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
      item = static_cast<uint32_t>(static_cast<double>(n) * u * u * u);
    }
    if (item >= clicks.size()) clicks.resize(item + 1, 0);
    ranking.Click(item);
    ++clicks[item];
    ASSERT_EQ(ranking.size(), clicks.size());
    if (step % 97 == 0 || step > 4900) {
      for (uint32_t j = 0; j <= clicks.size() + 1; ++j) {
        ASSERT_EQ(ranking.Above(j), brute(j, false)) << "item " << j << " at step " << step;
        ASSERT_EQ(ranking.Tied(j), brute(j, true)) << "item " << j << " at step " << step;
        ASSERT_EQ(ranking.Clicks(j), j < clicks.size() ? clicks[j] : 0);
        const int64_t r = ranking.Rank(j, draws);
        ASSERT_GE(r, ranking.Above(j));
        ASSERT_LE(r, ranking.Above(j) + ranking.Tied(j));
      }
    }
  }
  // Ties are drawn uniformly: five items with one click each, item 0's rank is 0..4, mean 2.
  PopularityRanking five(std::vector<int64_t>{1, 1, 1, 1, 1});
  std::vector<int> seen(5, 0);
  for (int k = 0; k < 5000; ++k) ++seen.at(static_cast<size_t>(five.Rank(0, draws)));
  for (int s : seen) EXPECT_NEAR(s, 1000, 150);
  // From nothing: the first clicked item ranks first; the rest are tied at zero clicks.
  PopularityRanking empty;
  EXPECT_EQ(empty.Above(0), 0);
  EXPECT_EQ(empty.Tied(0), 0);
  empty.Click(2);
  EXPECT_EQ(empty.Rank(2, draws), 0);
  EXPECT_EQ(empty.Above(0), 1);
  EXPECT_EQ(empty.Tied(0), 1);
  EXPECT_EQ(empty.Above(9), 1);
  EXPECT_EQ(empty.Tied(9), 2);
}

TEST(Dataset, LeaveOneOutAsRecBole) {
  SplitOptions so;
  so.max_len = 3;
  auto d = BuildLeaveOneOut(Lines({{"u1", {"a", "b", "c", "d", "e", "f"}}, {"u2", {"b", "c"}}}), so);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->num_users, 3);  // padding + 2
  EXPECT_EQ(d->num_items, 7);  // padding + a..f
  // u1 = 1, items a..f = 1..6. Graph: everything before the validation item, i_0 included.
  ASSERT_EQ(d->train_pairs.size(), 4u + 2u);  // u1: a b c d; u2 (too short to split): b c
  EXPECT_EQ(d->train_pairs[0].item, 1);
  // Training samples: targets b, c, d for u1 (and c for u2); prefixes keep the last 3 items.
  ASSERT_EQ(d->train_samples.size(), 3u + 1u);
  EXPECT_EQ(d->Prefix(d->train_samples[0]), (std::vector<int32_t>{1}));
  EXPECT_EQ(d->train_samples[2].target, 4);
  EXPECT_EQ(d->Prefix(d->train_samples[2]), (std::vector<int32_t>{1, 2, 3}));
  // Validation: the training items (last 3) -> e; test: includes the validation item -> f.
  ASSERT_EQ(d->valid_samples.size(), 1u);
  EXPECT_EQ(d->Prefix(d->valid_samples[0]), (std::vector<int32_t>{2, 3, 4}));
  EXPECT_EQ(d->valid_samples[0].target, 5);
  EXPECT_EQ(d->Prefix(d->test_samples[0]), (std::vector<int32_t>{3, 4, 5}));
  EXPECT_EQ(d->test_samples[0].target, 6);
  // With items left out (c, d: unknown to some model), the window reaches further back.
  const auto known = [](int32_t item) { return item != 3 && item != 4; };
  EXPECT_EQ(d->Prefix(d->test_samples[0], known), (std::vector<int32_t>{1, 2, 5}));
  EXPECT_EQ(d->Prefix(d->train_samples[2], known), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(d->Prefix(d->valid_samples[0], [](int32_t) { return true; }), d->Prefix(d->valid_samples[0]));
}

TEST(Dataset, TrainFractionKeepsTheFirstPartOfTheTrainingStream) {
  // Two users, times interleaved. Training interactions (before each validation item), in
  // global time order: u1:a@1 u2:p@2 u1:b@3 u2:q@4 u1:c@5 u2:r@6 u1:d@7 u2:s@8 (8 of them).
  std::vector<data::Interaction> events;
  int64_t order = 0;
  auto add = [&](const char* u, const char* i, int64_t ts) { events.push_back({u, i, ts, order++, true}); };
  for (auto [i, ts] : std::vector<std::pair<const char*, int64_t>>{{"a", 1}, {"b", 3}, {"c", 5}, {"d", 7}, {"e", 9}, {"f", 11}}) {
    add("u1", i, ts);
  }
  for (auto [i, ts] : std::vector<std::pair<const char*, int64_t>>{{"p", 2}, {"q", 4}, {"r", 6}, {"s", 8}, {"t", 10}, {"v", 12}}) {
    add("u2", i, ts);
  }
  SplitOptions all;
  auto full = BuildLeaveOneOut(events, all);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->train_pairs.size(), 8u);
  SplitOptions half;
  half.train_fraction = 0.5;  // the first 4: u1 a b, u2 p q
  auto d = BuildLeaveOneOut(events, half);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->train_fraction, 0.5);
  ASSERT_EQ(d->train_pairs.size(), 4u);
  for (const auto& p : d->train_pairs) {
    const std::string& name = d->item_names[static_cast<size_t>(p.item)];
    EXPECT_TRUE(name == "a" || name == "b" || name == "p" || name == "q") << name;
  }
  ASSERT_EQ(d->train_samples.size(), 2u);  // a -> b and p -> q
  // Validation and test are those of the full split, with whole prefixes.
  ASSERT_EQ(d->valid_samples.size(), full->valid_samples.size());
  for (size_t k = 0; k < d->valid_samples.size(); ++k) {
    EXPECT_EQ(d->Prefix(d->valid_samples[k]), full->Prefix(full->valid_samples[k]));
    EXPECT_EQ(d->Prefix(d->test_samples[k]), full->Prefix(full->test_samples[k]));
  }
  // The continual-quality streams: offline = those 4, online = the rest but the test items
  // (u1: c d e, u2: r s t; e and t validate), both in time order.
  add("u3", "x", 2);  // a user with fewer than 3 items: training data only, all of it
  add("u3", "y", 11);
  auto split = SplitStream(events, half);
  ASSERT_TRUE(split.ok()) << split.status();
  auto items = [](const std::vector<data::Interaction>& s) {
    std::string out;
    for (const auto& e : s) out += e.item_id;
    return out;
  };
  EXPECT_EQ(items(split->offline), "apxbq");  // half of the 10 training events (x ties p at 2)
  EXPECT_EQ(items(split->online), "crdsety");
  auto with_u3 = BuildLeaveOneOut(events, half);
  ASSERT_TRUE(with_u3.ok());
  EXPECT_EQ(split->offline.size(), with_u3->train_pairs.size());
  half.train_fraction = 0;
  EXPECT_EQ(BuildLeaveOneOut(events, half).status().code(), StatusCode::kInvalidArgument);
}

// Users walk a hidden cycle over the items: the next item is succ[current] with prob. 0.9.
// Items are equally popular, so a popularity ranking gets Recall@10 near 10 / num_items.
std::vector<data::Interaction> PlantedPattern(int users, int items, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> succ(static_cast<size_t>(items));
  std::iota(succ.begin(), succ.end(), 0);
  std::shuffle(succ.begin(), succ.end(), rng);
  std::vector<data::Interaction> events;
  for (int u = 0; u < users; ++u) {
    const int len = 6 + static_cast<int>(rng() % 8);
    int cur = static_cast<int>(rng() % static_cast<uint64_t>(items));
    for (int t = 0; t < len; ++t) {
      // (Built with += : GCC 12 warns falsely (-Wrestrict) about "literal" + std::string at -O3.)
      std::string user = "u", item = "i";
      user += std::to_string(u);
      item += std::to_string(cur);
      events.push_back({user, item, t, t});
      cur = (rng() % 10 < 9) ? succ[static_cast<size_t>(cur)] : static_cast<int>(rng() % static_cast<uint64_t>(items));
    }
  }
  return events;
}

double PopularityRecallAt10(const LeaveOneOutData& d) {
  std::map<int32_t, int64_t> counts;
  for (const auto& p : d.train_pairs) ++counts[p.item];
  std::vector<std::pair<int64_t, int32_t>> by_count;
  for (const auto& [item, c] : counts) by_count.emplace_back(-c, item);
  std::sort(by_count.begin(), by_count.end());
  std::vector<int32_t> top;
  for (size_t k = 0; k < 10 && k < by_count.size(); ++k) top.push_back(by_count[k].second);
  double hits = 0;
  for (const auto& s : d.test_samples) hits += std::count(top.begin(), top.end(), s.target) > 0 ? 1 : 0;
  return hits / static_cast<double>(d.test_samples.size());
}

TEST(Trainer, LearnsPlantedPatternAndResumes) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/500, /*items=*/80, /*seed=*/9));
  ASSERT_TRUE(d.ok()) << d.status();
  const double popularity = PopularityRecallAt10(*d);
  gsau::testing::TempDir dir("learner-test");
  TrainOptions o;
  o.model = ModelKind::kGsauRec;
  o.dim = 32;
  o.ffn_dim = 64;
  o.hidden_dropout = 0.2;
  o.attn_dropout = 0.2;
  o.graph_batch = 256;
  o.seq_batch = 256;
  o.lr = 5e-3;
  o.threads = 1;  // 2 OpenMP threads crawl when the machine is shared
  o.device = "cpu";
  o.progress = false;
  o.out_dir = dir.path().string();
  o.max_epochs = 4;
  {
    auto t = Trainer::Create(*d, o);
    ASSERT_TRUE(t.ok()) << t.status();
    auto r = (*t)->Run();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->epochs_run, 4);
  }
  // Resume: a fresh process picks up after epoch 4 and continues to epoch 12.
  o.resume = true;
  o.max_epochs = 12;
  auto t = Trainer::Create(*d, o);
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = (*t)->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->epochs_run, 4);
  EXPECT_EQ(r->history.front().epoch, 5);
  const double recall = r->test.Get("recall@10");
  EXPECT_GT(recall, 0.5) << "popularity " << popularity;
  EXPECT_GT(recall, 3 * popularity);
  // The CSV has one row per epoch run, the report and the checkpoints exist.
  std::ifstream csv(dir.File("metrics.csv"));
  int lines = 0;
  for (std::string line; std::getline(csv, line);) ++lines;
  EXPECT_EQ(lines, 1 + r->epochs_run);
  EXPECT_TRUE(std::filesystem::exists(dir.File("report.json")));
  EXPECT_TRUE(std::filesystem::exists(dir.File("checkpoint.pt")));
  EXPECT_TRUE(std::filesystem::exists(dir.File("best.pt")));
}

// A run stopped after epoch 2 and resumed repeats the uninterrupted run exactly (Adam state,
// early-stopping state, the batch order and the dropout masks all restored), and how
// validation is batched does not touch training.
TEST(Trainer, ResumedRunRepeatsTheUninterruptedOne) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/200, /*items=*/40, /*seed=*/5));
  ASSERT_TRUE(d.ok()) << d.status();
  TrainOptions o;
  o.dim = 16;
  o.ffn_dim = 32;
  o.hidden_dropout = 0.3;
  o.attn_dropout = 0.3;
  o.graph_batch = 64;
  o.seq_batch = 64;
  o.lr = 5e-3;
  o.threads = 1;
  o.device = "cpu";
  o.progress = false;
  o.valid_metric_decimals = -1;
  const auto run = [&](const TrainOptions& options) {
    auto t = Trainer::Create(*d, options);
    EXPECT_TRUE(t.ok()) << t.status();
    auto r = (*t)->Run();
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  };
  gsau::testing::TempDir straight_dir("learner-straight"), resumed_dir("learner-resumed"), other_dir("learner-other");
  o.max_epochs = 3;
  o.out_dir = straight_dir.path().string();
  const TrainReport straight = run(o);
  ASSERT_EQ(straight.history.size(), 3u);

  o.out_dir = resumed_dir.path().string();
  o.max_epochs = 2;
  run(o);
  o.resume = true;
  o.max_epochs = 3;
  const TrainReport resumed = run(o);
  ASSERT_EQ(resumed.history.size(), 1u);
  const auto& a = straight.history[2];
  const auto& b = resumed.history[0];
  EXPECT_EQ(b.epoch, 3);
  EXPECT_EQ(b.loss, a.loss);
  EXPECT_EQ(b.graph_align, a.graph_align);
  EXPECT_EQ(b.seq_align, a.seq_align);
  EXPECT_EQ(b.valid.Values(), a.valid.Values());
  EXPECT_EQ(resumed.best_epoch, straight.best_epoch);
  EXPECT_EQ(resumed.test.Values(), straight.test.Values());

  // Validation in chunks of 7 users instead of 2048: the same training.
  o.resume = false;
  o.max_epochs = 2;
  o.eval_batch = 7;
  o.out_dir = other_dir.path().string();
  const TrainReport chunked = run(o);
  ASSERT_EQ(chunked.history.size(), 2u);
  EXPECT_EQ(chunked.history[1].loss, straight.history[1].loss);
}

// A trainer on `d` made and run, or why either failed.
Result<TrainReport> TrainOn(const LeaveOneOutData& d, const TrainOptions& options) {
  auto t = Trainer::Create(d, options);
  if (!t.ok()) return t.status();
  return (*t)->Run();
}

// A tiny model on one CPU thread, no progress bar: for tests of the run directory.
TrainOptions TinyCpuOptions() {
  TrainOptions o;
  o.dim = 8;
  o.ffn_dim = 16;
  o.device = "cpu";
  o.threads = 1;
  o.progress = false;
  return o;
}

// A file's bytes ("" when it does not exist).
std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Lines in a text file (0 when it does not exist).
int CountLines(const std::string& path) {
  std::ifstream in(path);
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

// gsau train's Ctrl-C: the stop flag ends the run at the next step or evaluation chunk, leaving
// the files of the last finished epoch (no half row, no report), and --resume from them repeats
// the uninterrupted run. Before, the signal killed the process wherever it was.
TEST(Trainer, AStopEndsTheRunWithTheFilesOfTheLastFinishedEpoch) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/200, /*items=*/40, /*seed=*/5));
  ASSERT_TRUE(d.ok()) << d.status();
  TrainOptions o = TinyCpuOptions();
  o.valid_metric_decimals = -1;
  std::atomic<bool> stop{true};
  gsau::testing::TempDir loaded_dir("learner-loaded"), stopped_dir("learner-stopped"), straight_dir("learner-straight");
  // Stopped during the data load (before Run): nothing in the folder is touched, an earlier run
  // that --overwrite would replace included.
  o.max_epochs = 1;
  o.out_dir = loaded_dir.path().string();
  ASSERT_TRUE(TrainOn(*d, o).ok());
  const std::string checkpoint = FileBytes(loaded_dir.File("checkpoint.pt"));
  const std::string csv_rows = FileBytes(loaded_dir.File("metrics.csv"));
  o.stop = &stop;
  o.overwrite = true;
  auto r = TrainOn(*d, o);
  ASSERT_EQ(r.status().code(), StatusCode::kAborted) << r.status();
  EXPECT_EQ(r.status().message(), "stopped before training: nothing in " + o.out_dir + " changed");
  EXPECT_EQ(FileBytes(loaded_dir.File("checkpoint.pt")), checkpoint);
  EXPECT_EQ(FileBytes(loaded_dir.File("metrics.csv")), csv_rows);
  EXPECT_TRUE(std::filesystem::exists(loaded_dir.File("report.json")));

  // Stopped once its epoch 1 is on disk, wherever the run then is (training or validating).
  stop = false;
  o.overwrite = false;
  o.out_dir = stopped_dir.path().string();
  o.max_epochs = 100000;
  o.patience = 100000;
  const std::string csv = stopped_dir.File("metrics.csv");
  std::atomic<bool> returned{false};
  std::thread stopper([&] {
    while (!returned && CountLines(csv) < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stop = true;
  });
  r = TrainOn(*d, o);
  returned = true;
  stopper.join();
  ASSERT_EQ(r.status().code(), StatusCode::kAborted) << r.status();
  const int finished = CountLines(csv) - 1;
  ASSERT_GE(finished, 1);
  EXPECT_NE(r.status().message().find("checkpoint.pt holds epochs 1-" + std::to_string(finished) +
                                      ": --resume continues from there"),
            std::string::npos)
      << r.status();
  EXPECT_FALSE(std::filesystem::exists(stopped_dir.File("report.json")));

  // Resumed to one epoch more, it ends as a run that was never stopped.
  o.stop = nullptr;
  o.resume = true;
  o.max_epochs = finished + 1;
  auto resumed = TrainOn(*d, o);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  o.resume = false;
  o.out_dir = straight_dir.path().string();
  auto straight = TrainOn(*d, o);
  ASSERT_TRUE(straight.ok()) << straight.status();
  EXPECT_EQ(resumed->history.back().loss, straight->history.back().loss);
  EXPECT_EQ(resumed->test.Values(), straight->test.Values());
}

// best.pt is written before the epoch's checkpoint: a kill between the two left weights there
// that the resumed run's report does not describe. A resume writes it from the checkpoint.
TEST(Trainer, AResumeRewritesBestPtFromTheCheckpoint) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/60, /*items=*/20, /*seed=*/6));
  ASSERT_TRUE(d.ok()) << d.status();
  TrainOptions o = TinyCpuOptions();
  o.max_epochs = 1;
  gsau::testing::TempDir run_dir("learner-best"), other_dir("learner-best-other");
  const auto run = [&](const TrainOptions& options) {
    auto t = Trainer::Create(*d, options);
    EXPECT_TRUE(t.ok()) << t.status();
    auto r = (*t)->Run();
    EXPECT_TRUE(r.ok()) << r.status();
  };
  o.out_dir = run_dir.path().string();
  run(o);
  const std::string epoch1_best = FileBytes(run_dir.File("best.pt"));
  // Another model's weights in best.pt, as a later epoch's would be after the kill.
  TrainOptions other = o;
  other.out_dir = other_dir.path().string();
  other.seed = 99;
  run(other);
  std::filesystem::copy_file(other_dir.File("best.pt"), run_dir.File("best.pt"),
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_NE(FileBytes(run_dir.File("best.pt")), epoch1_best);
  TrainOptions resume = o;
  resume.resume = true;  // and no epoch left to train
  run(resume);
  EXPECT_EQ(FileBytes(run_dir.File("best.pt")), epoch1_best) << "best.pt holds the checkpoint's best weights";
}

// A resume needs the checkpoint alone (it carries the best weights): an unreadable best.pt once
// blocked it, under the checkpoint's name. A resume that trains on takes the earlier finish's
// report.json away at once: left beside a later checkpoint (a kill, here a failed write), it
// passed for the run's result. Another --dim is named among the settings.
// report.json records the init the model got, not the option's -1 ("the model's default").
TEST(Trainer, TheReportNamesTheInitTheModelGot) {
  const auto init_std = [](ModelKind kind, double option) {
    TrainOptions o;
    o.model = kind;
    o.init_std = option;
    const auto j = nlohmann::json::parse(ReportJson(TrainReport{}, o, LeaveOneOutData{}));
    return j.at("config").at("init_std").get<double>();
  };
  EXPECT_EQ(init_std(ModelKind::kSasRec, -1), 0.02) << "RecBole's initializer_range";
  EXPECT_EQ(init_std(ModelKind::kGsauRec, -1), 0.0) << "Xavier-normal";
  EXPECT_EQ(init_std(ModelKind::kGsauRec, 0.05), 0.05);
}

// Seeds run side by side (the reproduction's 2020-2024) never share an epoch's torch seed, which
// draws the dropout masks on CUDA (seed + epoch did: 2021's epoch 1 was 2020's epoch 2).
TEST(Trainer, EpochTorchSeedsOfNeighbouringRunsDiffer) {
  std::set<uint64_t> seen;
  for (uint64_t seed = 2020; seed <= 2024; ++seed) {
    for (int epoch = 0; epoch <= 300; ++epoch) EXPECT_TRUE(seen.insert(EpochTorchSeed(seed, epoch)).second);
  }
}

TEST(Trainer, AResumeNeedsOnlyTheCheckpointAndDropsTheEarlierReport) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/60, /*items=*/20, /*seed=*/7));
  ASSERT_TRUE(d.ok()) << d.status();
  gsau::testing::TempDir dir("learner-resume");
  TrainOptions o = TinyCpuOptions();
  o.max_epochs = 1;
  o.out_dir = dir.path().string();
  const auto run = [&](const TrainOptions& options) { return TrainOn(*d, options); };
  ASSERT_TRUE(run(o).ok());
  ASSERT_TRUE(std::filesystem::exists(dir.File("report.json")));
  // A resume with nothing left to train (train_reproduce.sh resumes finished runs) keeps the
  // finish's report, also when writing the new one fails.
  std::filesystem::create_directory(dir.File("report.json.tmp"));  // the report's write fails
  TrainOptions same = o;
  same.resume = true;
  EXPECT_FALSE(run(same).ok());
  EXPECT_TRUE(std::filesystem::exists(dir.File("report.json")));

  TrainOptions wider = o;
  wider.resume = true;
  wider.dim = 16;
  auto refused = run(wider);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("dim 8, now 16"), std::string::npos) << refused.status();

  std::filesystem::resize_file(dir.File("best.pt"), 0);
  TrainOptions more = o;
  more.resume = true;
  more.max_epochs = 2;
  auto failed = run(more);
  ASSERT_FALSE(failed.ok()) << "the report could not be written";
  EXPECT_EQ(failed.status().message().find("checkpoint.pt"), std::string::npos) << failed.status();
  EXPECT_FALSE(std::filesystem::exists(dir.File("report.json"))) << "epoch 1's report beside epoch 2's checkpoint";
  std::filesystem::remove(dir.File("report.json.tmp"));
  auto finished = run(more);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(finished->epochs_run, 2);
  EXPECT_TRUE(std::filesystem::exists(dir.File("report.json")));
}

// report.json gave the last process's threads for the whole run: a run resumed on other
// threads (1 for its first epochs, 2 after) said 2 for all of them. Each CSV row names its
// epoch's threads and device, and the report lists the run's epochs by setup; rows of a CSV
// from before these columns are kept, padded.
TEST(Trainer, EachEpochRecordsTheThreadsThatTrainedIt) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/60, /*items=*/20, /*seed=*/4));
  ASSERT_TRUE(d.ok()) << d.status();
  gsau::testing::TempDir dir("learner-setup");
  TrainOptions o = TinyCpuOptions();
  o.max_epochs = 1;
  o.out_dir = dir.path().string();
  ASSERT_TRUE(TrainOn(*d, o).ok());
  const auto lines = [&] {
    std::ifstream in(dir.File("metrics.csv"));
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  };
  // As a CSV of an older binary: without the last two columns.
  std::vector<std::string> old = lines();
  ASSERT_EQ(old.size(), 2u);
  ASSERT_TRUE(old[0].ends_with(",threads,device")) << old[0];
  ASSERT_TRUE(old[1].ends_with(",1,cpu")) << old[1];
  old[0].resize(old[0].size() - std::string(",threads,device").size());
  old[1].resize(old[1].size() - std::string(",1,cpu").size());
  std::ofstream(dir.File("metrics.csv"), std::ios::trunc) << old[0] << "\n" << old[1] << "\n";

  TrainOptions two = o;
  two.resume = true;
  two.max_epochs = 2;
  two.threads = 2;
  ASSERT_TRUE(TrainOn(*d, two).ok());
  TrainOptions three = two;
  three.max_epochs = 3;
  auto report = TrainOn(*d, three);
  ASSERT_TRUE(report.ok()) << report.status();
  const auto rows = lines();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_TRUE(rows[0].ends_with(",threads,device")) << rows[0];
  EXPECT_TRUE(rows[1].ends_with(",,")) << "epoch 1, from the older CSV: " << rows[1];
  EXPECT_TRUE(rows[2].ends_with(",2,cpu")) << rows[2];
  EXPECT_TRUE(rows[3].ends_with(",2,cpu")) << rows[3];
  const auto json = nlohmann::json::parse(std::ifstream(dir.File("report.json")));
  EXPECT_EQ(json["threads"], 2);
  EXPECT_EQ(json["epochs_by_setup"], nlohmann::json::parse(R"([
      {"first_epoch": 1, "last_epoch": 1, "threads": 0, "device": ""},
      {"first_epoch": 2, "last_epoch": 3, "threads": 2, "device": "cpu"}])"));
}

// An output directory holds one run: a new run over a checkpoint needs --overwrite, a resume
// needs the checkpoint's settings and the CSV rows it covers.
TEST(Trainer, OutputDirectoryHoldsOneRun) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/60, /*items=*/20, /*seed=*/4));
  ASSERT_TRUE(d.ok()) << d.status();
  gsau::testing::TempDir dir("learner-out");
  TrainOptions o = TinyCpuOptions();
  o.max_epochs = 2;
  o.out_dir = dir.path().string();
  const auto run = [&](const TrainOptions& options) { return TrainOn(*d, options); };
  const auto csv_rows = [&] {
    std::ifstream csv(dir.File("metrics.csv"));
    int lines = 0;
    for (std::string line; std::getline(csv, line);) ++lines;
    return lines - 1;
  };
  ASSERT_TRUE(run(o).ok());
  ASSERT_EQ(csv_rows(), 2);

  // A new run without --overwrite: refused, nothing touched.
  auto refused = run(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--resume continues it"), std::string::npos) << refused.status();
  EXPECT_EQ(csv_rows(), 2);
  EXPECT_TRUE(std::filesystem::exists(dir.File("checkpoint.pt")));

  // A resume with another learning rate: refused, naming it.
  TrainOptions other = o;
  other.resume = true;
  other.max_epochs = 3;
  other.lr = 0.1;
  refused = run(other);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("lr 0.001, now 0.10000000000000001"), std::string::npos)
      << refused.status();
  EXPECT_EQ(csv_rows(), 2);

  // A resume on other data of the same shape (each user's clicks in reverse order: the same
  // users, items, pairs and samples): refused, where the sizes alone let it through.
  auto events = PlantedPattern(/*users=*/60, /*items=*/20, /*seed=*/4);
  for (auto& e : events) e.ts_ms = -e.ts_ms;
  auto reversed = BuildLeaveOneOut(events);
  ASSERT_TRUE(reversed.ok()) << reversed.status();
  ASSERT_EQ(reversed->train_samples.size(), d->train_samples.size());
  ASSERT_EQ(reversed->num_items, d->num_items);
  {
    TrainOptions again = o;
    again.resume = true;
    again.max_epochs = 3;
    auto t = Trainer::Create(*reversed, again);
    ASSERT_TRUE(t.ok()) << t.status();
    auto other_data = (*t)->Run();
    ASSERT_FALSE(other_data.ok());
    EXPECT_NE(other_data.status().message().find("data_fingerprint"), std::string::npos) << other_data.status();
    EXPECT_EQ(csv_rows(), 2);
  }

  // A CSV that lost its rows (a new run was started, then stopped before its first epoch):
  // the checkpoint is not this CSV's run.
  {
    std::ifstream in(dir.File("metrics.csv"));
    std::string header;
    std::getline(in, header);
    in.close();
    std::ofstream(dir.File("metrics.csv"), std::ios::trunc) << header << "\n";
  }
  TrainOptions resume = o;
  resume.resume = true;
  resume.max_epochs = 3;
  refused = run(resume);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("not the same run"), std::string::npos) << refused.status();

  // --overwrite: a new run from epoch 1.
  TrainOptions over = o;
  over.overwrite = true;
  over.max_epochs = 1;
  auto fresh = run(over);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->history.front().epoch, 1);
  EXPECT_EQ(csv_rows(), 1);

  // A second run in the same directory at the same time: refused.
  {
    auto held = FileLock::Take(dir.File(".lock"), "a test holds it");
    ASSERT_TRUE(held.ok()) << held.status();
    TrainOptions second = o;
    second.resume = true;
    refused = run(second);
    EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status();
  }

  TrainOptions negative = o;
  negative.patience = -1;
  EXPECT_EQ(Trainer::Create(*d, negative).status().code(), StatusCode::kInvalidArgument);
}

// --resume where checkpoint.pt is gone but the run is not (a finished run's report.json, or
// epochs of CSV rows): refused, nothing touched; where nothing of a run is there: a new run.
TEST(Trainer, AResumeWithoutItsCheckpointDoesNotReplaceTheRun) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/60, /*items=*/20, /*seed=*/4));
  ASSERT_TRUE(d.ok()) << d.status();
  gsau::testing::TempDir dir("learner-no-ckpt");
  TrainOptions o = TinyCpuOptions();
  o.max_epochs = 2;
  o.patience = 5;
  o.out_dir = dir.path().string();
  ASSERT_TRUE(TrainOn(*d, o).ok());
  ASSERT_TRUE(std::filesystem::exists(dir.File("report.json")));
  const auto read = [&](const char* name) {
    std::ifstream in(dir.File(name));
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string csv = read("metrics.csv");
  const std::string report = read("report.json");
  std::filesystem::remove(dir.File("checkpoint.pt"));

  TrainOptions resume = o;
  resume.resume = true;
  resume.max_epochs = 3;
  auto refused = TrainOn(*d, resume);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("no checkpoint.pt to resume it from"), std::string::npos)
      << refused.status();
  EXPECT_EQ(read("metrics.csv"), csv);
  EXPECT_EQ(read("report.json"), report);

  // Without the report, the CSV's two epochs still name the run.
  std::filesystem::remove(dir.File("report.json"));
  refused = TrainOn(*d, resume);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("2 epochs in metrics.csv"), std::string::npos) << refused.status();
  EXPECT_EQ(read("metrics.csv"), csv);

  // An empty folder: --resume starts a new run (train_reproduce.sh always passes it).
  gsau::testing::TempDir empty("learner-no-ckpt-empty");
  resume.out_dir = empty.path().string();
  resume.max_epochs = 1;
  auto fresh = TrainOn(*d, resume);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->history.front().epoch, 1);
}

// Options checked before the data is needed: ValidateTrainOptions names the option.
TEST(Trainer, OptionsAreCheckedWithoutData) {
  const auto message = [](const TrainOptions& o) { return ValidateTrainOptions(o).message(); };
  EXPECT_TRUE(ValidateTrainOptions(TinyCpuOptions()).ok());
  TrainOptions o = TinyCpuOptions();
  o.resume = o.overwrite = true;
  EXPECT_NE(message(o).find("resume and overwrite exclude each other"), std::string::npos) << message(o);
  for (const double bad : {std::nan(""), -0.5, std::numeric_limits<double>::infinity()}) {
    o = TinyCpuOptions();
    o.init_std = bad;
    EXPECT_NE(message(o).find("init_std must be"), std::string::npos) << bad;
  }
  o = TinyCpuOptions();
  o.valid_metric = "NDCG@20";
  EXPECT_NE(message(o).find("one of recall@5"), std::string::npos) << message(o);
  o = TinyCpuOptions();
  o.device = "gpu";
  EXPECT_NE(message(o).find("device must be"), std::string::npos) << message(o);
}

// The default init (-1) and the init it stands for (0: Xavier for GSAU) are one setting: a
// resume does not refuse one for the other.
TEST(Trainer, AResumeTakesTheDefaultInitForWhatItMeans) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/60, /*items=*/20, /*seed=*/4));
  ASSERT_TRUE(d.ok()) << d.status();
  gsau::testing::TempDir dir("learner-init");
  TrainOptions o = TinyCpuOptions();
  o.max_epochs = 1;
  o.out_dir = dir.path().string();
  ASSERT_EQ(o.init_std, -1.0);
  ASSERT_TRUE(TrainOn(*d, o).ok());
  TrainOptions resume = o;
  resume.resume = true;
  resume.max_epochs = 2;
  resume.init_std = 0;
  auto resumed = TrainOn(*d, resume);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  resume.init_std = 0.05;
  resume.max_epochs = 3;
  auto refused = TrainOn(*d, resume);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("init_std"), std::string::npos) << refused.status();
  // A checkpoint written before the settings held the init the model got says -1: the model's
  // default, so it resumes with -1 or what -1 stands for, and not with another std.
  const std::string saved = "model=gsau-rec\ninit_std=-1\nlr=0.001\n";
  EXPECT_EQ(SettingsDiff(saved, "model=gsau-rec\ninit_std=0\nlr=0.001\n", 0.0), "");
  EXPECT_EQ(SettingsDiff(saved, "model=gsau-rec\ninit_std=0.050000000000000003\nlr=0.001\n", 0.0),
            "init_std -1, now 0.050000000000000003");
  EXPECT_EQ(SettingsDiff(saved, "model=gsau-rec\ninit_std=0\nlr=0.01\ngamma=0.1\n", 0.0), "lr 0.001, now 0.01")
      << "a key the checkpoint lacks is no difference";
  // Stored with the padding row, said as the log and the report count users and items.
  EXPECT_EQ(SettingsDiff("users=31\nitems=21\n", "users=22\nitems=32\n", 0.0), "items 20, now 31; users 30, now 21");
}

// A resume compares the options the model uses: one it ignores (gamma for SASRec-only, the
// sequence encoder's dropouts for LightGCN-only) may differ; one it uses may not.
TEST(Trainer, AResumeIgnoresOptionsTheModelDoesNotUse) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/60, /*items=*/20, /*seed=*/4));
  ASSERT_TRUE(d.ok()) << d.status();
  for (const auto kind : {ModelKind::kSasRec, ModelKind::kLightGcn}) {
    gsau::testing::TempDir dir("learner-ignored");
    TrainOptions o = TinyCpuOptions();
    o.model = kind;
    o.max_epochs = 1;
    o.out_dir = dir.path().string();
    ASSERT_TRUE(TrainOn(*d, o).ok()) << ModelKindName(kind);
    TrainOptions unused = o;
    unused.resume = true;
    unused.max_epochs = 2;
    if (kind == ModelKind::kSasRec) {
      unused.gamma = 0.5;
      unused.temperature = 3;
      unused.graph_layers = 3;
      unused.lightgcn_mask_history = false;
    } else {
      unused.attn_dropout = 0.1;
      unused.hidden_dropout = 0.2;
      unused.seq_batch = 64;
    }
    auto resumed = TrainOn(*d, unused);
    ASSERT_TRUE(resumed.ok()) << ModelKindName(kind) << ": " << resumed.status();
    EXPECT_EQ(resumed->history.back().epoch, 2) << ModelKindName(kind);
    TrainOptions used = unused;
    used.max_epochs = 3;
    if (kind == ModelKind::kSasRec) {
      used.hidden_dropout = 0.2;
    } else {
      used.temperature = 3;
    }
    auto refused = TrainOn(*d, used);
    ASSERT_FALSE(refused.ok()) << ModelKindName(kind);
    EXPECT_NE(refused.status().message().find(kind == ModelKind::kSasRec ? "hidden_dropout" : "temperature"),
              std::string::npos)
        << refused.status();
  }
}

// A model that scores every item alike ranks no target first: ties count against the target
// (they counted for it, and such a model reported recall@5 = 1).
TEST(Trainer, ConstantScoresGetNoHits) {
  auto d = BuildLeaveOneOut(PlantedPattern(/*users=*/60, /*items=*/80, /*seed=*/4));
  ASSERT_TRUE(d.ok()) << d.status();
  TrainOptions o;
  o.model = ModelKind::kSasRec;
  o.dim = 8;
  o.ffn_dim = 16;
  o.init_std = 1e-45;  // every weight 0 or the smallest subnormal: every score exactly 0
  o.lr = 0;
  o.max_epochs = 1;
  o.device = "cpu";
  o.threads = 1;
  o.progress = false;
  auto t = Trainer::Create(*d, o);
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = (*t)->Run();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->test.Get("recall@50"), 0.0);
  EXPECT_EQ(r->test.Get("mrr@50"), 0.0);
  EXPECT_EQ(r->best_valid.Get("ndcg@50"), 0.0);
}

// An epoch of GSAU runs both loaders side by side as the authors' GSAUDataLoader: the shorter
// one starts over once, and the epoch ends when either runs out after that.
TEST(Trainer, TheShorterLoaderStartsOverOnce) {
  const auto steps = [](const std::vector<std::pair<std::string, std::vector<std::string>>>& users, ModelKind kind) {
    auto d = BuildLeaveOneOut(Lines(users));
    EXPECT_TRUE(d.ok()) << d.status();
    TrainOptions o = TinyCpuOptions();
    o.model = kind;
    o.graph_batch = 1;
    o.seq_batch = 1;
    auto t = Trainer::Create(*d, o);
    EXPECT_TRUE(t.ok()) << t.status();
    return std::pair<int64_t, int64_t>{static_cast<int64_t>(d->train_pairs.size()), (*t)->StepsPerEpoch()};
  };
  // u1: graph pairs a, b (before the validation item), one sample (a -> b); u2..u5: a pair each.
  const std::vector<std::pair<std::string, std::vector<std::string>>> lopsided = {
      {"u1", {"a", "b", "c", "d"}}, {"u2", {"a"}}, {"u3", {"b"}}, {"u4", {"c"}}, {"u5", {"d"}}};
  EXPECT_EQ(steps(lopsided, ModelKind::kGsauRec), (std::pair<int64_t, int64_t>{6, 2}));  // 6 graph, 1 sequence batch
  EXPECT_EQ(steps(lopsided, ModelKind::kGsau), (std::pair<int64_t, int64_t>{6, 2}));
  EXPECT_EQ(steps(lopsided, ModelKind::kLightGcn), (std::pair<int64_t, int64_t>{6, 6}));  // one loader: all of it
  EXPECT_EQ(steps(lopsided, ModelKind::kSasRec), (std::pair<int64_t, int64_t>{6, 1}));
  // u1: pairs a, b, c; samples a -> b, b -> c. Three graph batches against two: all three.
  EXPECT_EQ(steps({{"u1", {"a", "b", "c", "d", "e"}}}, ModelKind::kGsauRec), (std::pair<int64_t, int64_t>{3, 3}));
}

// Each model learns on its own: its training loss falls and its validation NDCG@20 rises over a
// few epochs. (Evaluation has no dropout, so a step that changed nothing, or a loss cut from the
// parameters, would give the first epoch's validation figure exactly, every epoch.)
TEST(Trainer, BaselinesLearn) {
  auto d = BuildLeaveOneOut(PlantedPattern(60, 20, 4));
  ASSERT_TRUE(d.ok());
  for (auto kind : {ModelKind::kGsau, ModelKind::kSasRec, ModelKind::kLightGcn}) {
    TrainOptions o;
    o.model = kind;
    o.dim = 8;
    o.ffn_dim = 16;
    o.device = "cpu";
    o.threads = 1;
    o.progress = false;
    o.max_epochs = 4;
    o.patience = 100;
    auto t = Trainer::Create(*d, o);
    ASSERT_TRUE(t.ok()) << t.status();
    auto r = (*t)->Run();
    ASSERT_TRUE(r.ok()) << ModelKindName(kind) << ": " << r.status();
    EXPECT_EQ(r->test.count, static_cast<int64_t>(d->test_samples.size()));
    ASSERT_EQ(r->history.size(), 4u) << ModelKindName(kind);
    for (const auto& e : r->history) EXPECT_TRUE(std::isfinite(e.loss)) << ModelKindName(kind);
    EXPECT_LT(r->history.back().loss, r->history.front().loss) << ModelKindName(kind);
    EXPECT_GT(r->history.back().valid.Get("ndcg@20"), r->history.front().valid.Get("ndcg@20")) << ModelKindName(kind);
  }
}

}  // namespace
}  // namespace gsau::learner
