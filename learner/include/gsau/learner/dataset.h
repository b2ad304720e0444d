// The offline dataset of the learner: dense ids, a leave-one-out split and RecBole's samples.
//
// Id spaces: users are 1..num_users-1 and items 1..num_items-1 (dense, in order of first
// appearance in the input); id 0 is padding in both, so tables have num_users / num_items rows.
//
// Split (per user, time order i_0 .. i_{n-1}, as RecBole's leave-one-out with prefix augmentation):
//  - every prefix predicts its next item; samples with targets i_1 .. i_{n-3} train, the sample with
//    target i_{n-2} validates (its prefix is all training items), and the one with target i_{n-1}
//    tests (its prefix includes the validation item). A prefix keeps its last max_len items.
//  - the graph holds the training interactions (u, i_0) .. (u, i_{n-3}): every item before the
//    validation item, including i_0, which no training sample has as its target.
//  - users with fewer than 3 items contribute training data only (no validation or test sample).
//  - Users of 4 or more items (every user of a 5-core dataset, as the paper's) are split as
//    RecBole splits them. Users of 2 or 3 are not: RecBole's sequential split cuts the samples,
//    not the items, so a 3-item user gets a training sample (i_0 -> i_1) and a test sample but
//    no validation one, and its graph split (by items) trains a 2-item user on i_0 only. Here
//    GSAU.md's rule holds for every user: the last item tests, the one before validates, the
//    rest train (a 3-item user validates and trains no sequence sample).
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gsau/common/status.h"
#include "gsau/data/interactions.h"

namespace gsau::learner {

// One (prefix, next item) sample: the prefix is sequences[user][max(0, end - max_len) .. end),
// the target is sequences[user][end].
struct SequenceSample {
  int32_t user = 0;
  int32_t end = 0;
  int32_t target = 0;
};

struct GraphPair {
  int32_t user = 0;
  int32_t item = 0;
};

struct SplitOptions {
  int32_t max_len = 50;  // longest prefix a sample keeps (RecBole MAX_ITEM_LIST_LENGTH)
  // Train on the first fraction of the training stream only: the training interactions (each
  // user's items before the validation item) in global (time, input order); graph pairs and
  // training samples of later interactions are dropped, validation and test are unchanged
  // (prefixes stay whole). The offline half of the continual-quality experiment. (0, 1].
  double train_fraction = 1.0;
  // false: a split with no training sample is not an error (gsau evaluate uses only the
  // validation and test samples).
  bool need_training_samples = true;
};

struct LeaveOneOutData {
  int64_t num_users = 1;  // rows of the user table, padding row 0 included
  int64_t num_items = 1;  // rows of the item table, padding row 0 included
  int32_t max_len = 50;
  double train_fraction = 1.0;  // SplitOptions::train_fraction it was built with
  std::vector<std::vector<int32_t>> sequences;  // [num_users], each user's items in time order
  std::vector<GraphPair> train_pairs;           // the graph's edges, also the graph batches
  std::vector<SequenceSample> train_samples;
  std::vector<SequenceSample> valid_samples;
  std::vector<SequenceSample> test_samples;
  std::vector<std::string> user_names;  // external ids, [num_users] ("" for padding)
  std::vector<std::string> item_names;  // external ids, [num_items]

  int64_t num_interactions() const;
  // The prefix of `s`, oldest first (at most max_len items).
  std::vector<int32_t> Prefix(const SequenceSample& s) const;
  // Length of the prefix of `s`.
  int32_t PrefixLength(const SequenceSample& s) const;
  // The last max_len items before `s`'s target for which keep(item) holds, oldest first: the
  // prefix a model that knows only those items uses (the online learner skips unknown items
  // before taking its last max_len), where Prefix would keep fewer.
  std::vector<int32_t> Prefix(const SequenceSample& s, const std::function<bool(int32_t)>& keep) const;
};

// Groups `events` by user, orders each user's events by (ts_ms, order), assigns dense ids and
// splits. Repeated (user, item) events are kept (they are distinct clicks).
Result<LeaveOneOutData> BuildLeaveOneOut(const std::vector<data::Interaction>& events,
                                         const SplitOptions& options = {});

// The two streams of the continual-quality experiment, each in the training stream's global
// (time, input order, user) order: `offline` is what BuildLeaveOneOut(events, options) trains
// on (its graph pairs; with a train_fraction < 1, the first part of the training stream), and
// `online` every other interaction but the test items (the rest of the training stream and
// the validation items), to be streamed into a pipeline started from the offline run.
struct StreamSplit {
  std::vector<data::Interaction> offline;
  std::vector<data::Interaction> online;
};
Result<StreamSplit> SplitStream(const std::vector<data::Interaction>& events, const SplitOptions& options);

// Reads `path` (and `times_path`, may be empty) with data::ReadInteractions and splits it.
Result<LeaveOneOutData> LoadLeaveOneOut(const std::string& path, const std::string& times_path,
                                        const SplitOptions& options = {});

}  // namespace gsau::learner
