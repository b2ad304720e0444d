// bench_due_users: what the user publisher's bookkeeping costs a flush while every user of a
// large state is due again (the hourly publisher.user_refresh_s, a start-up, a republish), under
// a steady trickle of clicks. Side by side, in one run:
//   copy:  the due set as it was before it was split (pipeline.cc up to 519bf82): one hash map,
//          copied whole into a candidate list at each flush (those who clicked first), and
//          scanned for the oldest batch held back once a second;
//   split: DueUsers (gsau/pipeline/due_users.h): those who clicked apart from those marked
//          without a click, marked users taken in turn, the hold counted per batch.
// Each flush merges the clicks of one publisher.interval_ms (50 ms at --clicks-per-s), then
// selects every user who clicked and up to --marked-per-flush marked ones (PublishUsers'
// kMarkedUsersPerFlush: 1,024 since 2026-12-07, 8,192 before), and erases
// them as published. Embedding, session reads and producing are left out: the same in both,
// they are not what grows with the number of users due. Timed: the selection per flush (the
// user thread's time before its first forward pass) and the whole refresh.
// Last line:
//   BENCH due_users users=<largest --users> marked_per_flush=<n> flushes=<n> copy_flush_p50_ms=<..> copy_flush_max_ms=<..>
//         split_flush_p50_ms=<..> split_flush_max_ms=<..> copy_refresh_s=<..> split_refresh_s=<..>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gsau/pipeline/due_users.h"

namespace gsau::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
using state::UserId;

constexpr int kFlushMs = 50;  // publisher.interval_ms's default

struct Args {
  std::vector<size_t> users = {250'000, 1'000'000, 2'000'000};
  int clicks_per_s = 2000;
  size_t marked_per_flush = 1024;
};

struct Run {
  size_t flushes = 0;
  std::vector<double> flush_ms;  // the selection of each flush
  double mark_s = 0;             // marking every user due
  double refresh_s = 0;          // the selections of every flush until no marked user is left
  size_t published = 0;
  uint64_t through = 0;  // the batch through which every user was handed out (equal in both)
};

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// The clicks of one flush interval: the same users in the same order for both sets.
std::vector<UserId> Clicks(std::mt19937_64& rng, size_t users, int per_flush) {
  std::vector<UserId> out(static_cast<size_t>(per_flush));
  for (auto& u : out) u = static_cast<UserId>(rng() % users);
  return out;
}

// The due set as it was: one map, copied into candidates at each flush.
Run CopyingSet(size_t users, int clicks_per_flush, size_t marked_per_flush) {
  Run run;
  std::unordered_map<UserId, DueUser> due;
  const auto t0 = Clock::now();
  for (UserId u = 0; u < users; ++u) due.emplace(u, DueUser{1, kNoClickSeq, false});
  run.mark_s = Ms(Clock::now() - t0) / 1e3;
  std::mt19937_64 rng(2020);
  uint64_t seq = 1;
  size_t marked_left = users;
  while (marked_left > 0) {
    ++seq;
    for (UserId u : Clicks(rng, users, clicks_per_flush)) {
      DueUser d{static_cast<int64_t>(seq), seq, true};
      auto [it, inserted] = due.emplace(u, d);
      if (!inserted && !it->second.clicked) --marked_left;
      if (!inserted) it->second.Merge(d);
    }
    const auto t = Clock::now();
    if (run.flushes % (1000 / kFlushMs) == 0) {  // once a second: the oldest batch held back
      uint64_t through = seq;
      for (const auto& [u, d] : due) through = std::min(through, std::max<uint64_t>(d.first_seq, 1) - 1);
      run.through = std::max(run.through, through);
    }
    std::vector<std::pair<UserId, DueUser>> candidates;
    candidates.reserve(due.size());
    for (const auto& e : due) {
      if (e.second.clicked) candidates.push_back(e);
    }
    for (const auto& e : due) {
      if (!e.second.clicked) candidates.push_back(e);
    }
    std::vector<UserId> taken;
    size_t marked = 0;
    for (const auto& [u, d] : candidates) {
      if (!d.clicked && marked == marked_per_flush) break;
      taken.push_back(u);
      if (!d.clicked) ++marked;
    }
    marked_left -= marked;
    for (UserId u : taken) due.erase(u);
    run.flush_ms.push_back(Ms(Clock::now() - t));
    run.refresh_s += run.flush_ms.back() / 1e3;
    run.published += taken.size();
    ++run.flushes;
  }
  return run;
}

// DueUsers.
Run SplitSet(size_t users, int clicks_per_flush, size_t marked_per_flush) {
  Run run;
  DueUsers due;
  const auto t0 = Clock::now();
  for (UserId u = 0; u < users; ++u) due.Merge(u, DueUser{1, kNoClickSeq, false});
  run.mark_s = Ms(Clock::now() - t0) / 1e3;
  std::mt19937_64 rng(2020);
  uint64_t seq = 1;
  while (due.marked() > 0) {
    ++seq;
    for (UserId u : Clicks(rng, users, clicks_per_flush)) due.Merge(u, DueUser{static_cast<int64_t>(seq), seq, true});
    const auto t = Clock::now();
    if (run.flushes % (1000 / kFlushMs) == 0) {
      run.through = std::max(run.through, std::min(seq, std::max<uint64_t>(due.MinFirstSeq(), 1) - 1));
    }
    std::vector<UserId> taken;
    due.ForEachClicked([&](UserId u, const DueUser&) { taken.push_back(u); });
    size_t marked = 0;
    for (size_t looked = 0, n = due.marked(); looked < n && marked < marked_per_flush; ++looked) {
      const auto next = due.NextMarked();
      if (!next) break;
      taken.push_back(next->first);
      ++marked;
    }
    for (UserId u : taken) due.Erase(u);
    run.flush_ms.push_back(Ms(Clock::now() - t));
    run.refresh_s += run.flush_ms.back() / 1e3;
    run.published += taken.size();
    ++run.flushes;
  }
  return run;
}

std::vector<size_t> ParseList(const char* s) {
  std::vector<size_t> out;
  for (const char* p = s; *p != '\0';) {
    char* end = nullptr;
    out.push_back(std::strtoull(p, &end, 10));
    p = (*end == ',') ? end + 1 : end;
    if (end == p && *end != '\0') break;
  }
  return out;
}

int Main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--users" && i + 1 < argc) {
      args.users = ParseList(argv[++i]);
    } else if (a == "--clicks-per-s" && i + 1 < argc) {
      args.clicks_per_s = std::atoi(argv[++i]);
    } else if (a == "--marked-per-flush" && i + 1 < argc) {
      args.marked_per_flush = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr,
                   "usage: bench_due_users [--users N,N,...] [--clicks-per-s N] [--marked-per-flush N]\n"
                   "  every user of the state due again (a refresh), flushes every %d ms with the clicks\n"
                   "  of the interval, until every marked user has been selected; the pre-split due set\n"
                   "  (copy) and DueUsers (split) side by side. Defaults: --users 250000,1000000,2000000\n"
                   "  --clicks-per-s 2000 --marked-per-flush 1024.\n",
                   kFlushMs);
      return 2;
    }
  }
  if (args.users.empty() || args.clicks_per_s < 0 || args.marked_per_flush == 0 ||
      std::any_of(args.users.begin(), args.users.end(), [](size_t n) { return n == 0; })) {
    std::fprintf(stderr, "bench_due_users: --users needs sizes > 0, --clicks-per-s >= 0, --marked-per-flush > 0\n");
    return 2;
  }
  const int per_flush = args.clicks_per_s * kFlushMs / 1000;
  std::printf("%10s %6s %8s %9s %9s %9s %9s %10s %10s %8s\n", "users", "set", "flushes", "mark_s", "p50_ms",
              "p99_ms", "max_ms", "refresh_s", "published", "through");
  Run copy, split;
  for (size_t n : args.users) {
    copy = CopyingSet(n, per_flush, args.marked_per_flush);
    split = SplitSet(n, per_flush, args.marked_per_flush);
    for (const auto& [name, r] : {std::pair<const char*, const Run*>{"copy", &copy}, {"split", &split}}) {
      std::printf("%10zu %6s %8zu %9.3f %9.3f %9.3f %9.3f %10.3f %10zu %8lu\n", n, name, r->flushes, r->mark_s,
                  Percentile(r->flush_ms, 0.5), Percentile(r->flush_ms, 0.99),
                  *std::max_element(r->flush_ms.begin(), r->flush_ms.end()), r->refresh_s, r->published,
                  static_cast<unsigned long>(r->through));
    }
    std::fflush(stdout);
  }
  std::printf(
      "BENCH due_users users=%zu marked_per_flush=%zu flushes=%zu copy_flush_p50_ms=%.3f copy_flush_max_ms=%.3f split_flush_p50_ms=%.3f "
      "split_flush_max_ms=%.3f copy_refresh_s=%.3f split_refresh_s=%.3f\n",
      args.users.back(), args.marked_per_flush, split.flushes, Percentile(copy.flush_ms, 0.5),
      *std::max_element(copy.flush_ms.begin(), copy.flush_ms.end()), Percentile(split.flush_ms, 0.5),
      *std::max_element(split.flush_ms.begin(), split.flush_ms.end()), copy.refresh_s, split.refresh_s);
  return 0;
}

}  // namespace
}  // namespace gsau::pipeline

int main(int argc, char** argv) { return gsau::pipeline::Main(argc, argv); }
