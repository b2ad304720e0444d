#include "gsau/learner/dataset.h"

#include <algorithm>
#include <numeric>
#include <sstream>
#include <unordered_map>

namespace gsau::learner {

int64_t LeaveOneOutData::num_interactions() const {
  int64_t n = 0;
  for (const auto& s : sequences) n += static_cast<int64_t>(s.size());
  return n;
}

int32_t LeaveOneOutData::PrefixLength(const SequenceSample& s) const {
  return std::min(s.end, max_len);
}

std::vector<int32_t> LeaveOneOutData::Prefix(const SequenceSample& s) const {
  const auto& seq = sequences[static_cast<size_t>(s.user)];
  const int32_t begin = s.end - PrefixLength(s);
  return {seq.begin() + begin, seq.begin() + s.end};
}

std::vector<int32_t> LeaveOneOutData::Prefix(const SequenceSample& s,
                                             const std::function<bool(int32_t)>& keep) const {
  const auto& seq = sequences[static_cast<size_t>(s.user)];
  std::vector<int32_t> prefix;
  for (int32_t t = s.end - 1; t >= 0 && static_cast<int32_t>(prefix.size()) < max_len; --t) {
    if (keep(seq[static_cast<size_t>(t)])) prefix.push_back(seq[static_cast<size_t>(t)]);
  }
  std::reverse(prefix.begin(), prefix.end());
  return prefix;
}

namespace {

// Event indices by dense user (row 0, padding, is empty; users in order of first appearance),
// each user's events in (time, input order). user_names gets the external ids ("" first).
std::vector<std::vector<size_t>> RowsByUser(const std::vector<data::Interaction>& events,
                                            std::vector<std::string>* user_names) {
  std::unordered_map<std::string, int32_t> user_ids;
  std::vector<std::vector<size_t>> rows(1);
  user_names->assign(1, "");
  for (size_t k = 0; k < events.size(); ++k) {
    auto [u, new_user] = user_ids.try_emplace(events[k].user_id, static_cast<int32_t>(rows.size()));
    if (new_user) {
      user_names->push_back(events[k].user_id);
      rows.emplace_back();
    }
    rows[static_cast<size_t>(u->second)].push_back(k);
  }
  for (auto& r : rows) {
    std::stable_sort(r.begin(), r.end(), [&](size_t a, size_t b) {
      if (events[a].ts_ms != events[b].ts_ms) return events[a].ts_ms < events[b].ts_ms;
      return events[a].order < events[b].order;
    });
  }
  return rows;
}

// The global order of the training stream: (time, input order, user); the user breaks ties of
// per-user-line inputs, whose order is a position.
bool StreamBefore(int64_t ts_a, int64_t order_a, int64_t user_a, int64_t ts_b, int64_t order_b, int64_t user_b) {
  if (ts_a != ts_b) return ts_a < ts_b;
  return order_a != order_b ? order_a < order_b : user_a < user_b;
}

}  // namespace

Result<LeaveOneOutData> BuildLeaveOneOut(const std::vector<data::Interaction>& events,
                                         const SplitOptions& options) {
  if (options.max_len < 1) return Status::InvalidArgument("max_len must be >= 1");
  if (!(options.train_fraction > 0.0 && options.train_fraction <= 1.0)) {
    return Status::InvalidArgument("train_fraction must be in (0, 1]");
  }
  if (events.empty()) return Status::InvalidArgument("no interactions");
  // Without times the "first fraction" is of positions, users interleaved round-robin: no
  // stream's order (gsau split refused such data; gsau train took it).
  if (options.train_fraction < 1.0 &&
      std::any_of(events.begin(), events.end(), [](const data::Interaction& e) { return !e.has_time; })) {
    std::ostringstream m;
    m << "train_fraction " << options.train_fraction
      << " takes the first part of the training stream in event-time order, but the interactions have no times "
         "(per-user lines need a times file)";
    return Status::InvalidArgument(m.str());
  }
  LeaveOneOutData d;
  d.max_len = options.max_len;
  d.train_fraction = options.train_fraction;
  const auto rows = RowsByUser(events, &d.user_names);
  d.item_names.emplace_back();
  std::unordered_map<std::string, int32_t> item_ids;
  for (const auto& e : events) {
    if (item_ids.try_emplace(e.item_id, static_cast<int32_t>(d.item_names.size())).second) {
      d.item_names.push_back(e.item_id);
    }
  }
  d.num_users = static_cast<int64_t>(d.user_names.size());
  d.num_items = static_cast<int64_t>(d.item_names.size());
  d.sequences.resize(rows.size());
  // Per user: how many items train (before the validation item), and how many of those are
  // kept (all, unless train_fraction cuts the training stream short).
  std::vector<int32_t> n_train(rows.size(), 0);
  struct TrainEvent {
    int64_t ts, order;
    int32_t user;
  };
  std::vector<TrainEvent> train_events;
  for (size_t u = 1; u < rows.size(); ++u) {
    const auto& r = rows[u];
    auto& seq = d.sequences[u];
    seq.reserve(r.size());
    for (size_t k : r) seq.push_back(item_ids.at(events[k].item_id));
    const auto n = static_cast<int32_t>(seq.size());
    n_train[u] = n >= 3 ? n - 2 : n;
    if (options.train_fraction < 1.0) {
      for (int32_t t = 0; t < n_train[u]; ++t) {
        const auto& e = events[r[static_cast<size_t>(t)]];
        train_events.push_back({e.ts_ms, e.order, static_cast<int32_t>(u)});
      }
    }
  }
  std::vector<int32_t> kept = n_train;
  size_t keep = 0;  // how many of train_events the fraction keeps
  if (options.train_fraction < 1.0) {
    // The first fraction of the training stream in global order. A user's training items are
    // in that order too, so what is kept of each user is a prefix.
    std::sort(train_events.begin(), train_events.end(), [](const TrainEvent& a, const TrainEvent& b) {
      return StreamBefore(a.ts, a.order, a.user, b.ts, b.order, b.user);
    });
    keep = static_cast<size_t>(options.train_fraction * static_cast<double>(train_events.size()));
    std::fill(kept.begin(), kept.end(), 0);
    for (size_t k = 0; k < keep; ++k) ++kept[static_cast<size_t>(train_events[k].user)];
  }
  for (size_t u = 1; u < rows.size(); ++u) {
    const auto& seq = d.sequences[u];
    const auto user = static_cast<int32_t>(u);
    const auto n = static_cast<int32_t>(seq.size());
    for (int32_t t = 0; t < kept[u]; ++t) d.train_pairs.push_back({user, seq[static_cast<size_t>(t)]});
    for (int32_t t = 1; t < kept[u]; ++t) d.train_samples.push_back({user, t, seq[static_cast<size_t>(t)]});
    if (n >= 3) {
      d.valid_samples.push_back({user, n - 2, seq[static_cast<size_t>(n - 2)]});
      d.test_samples.push_back({user, n - 1, seq[static_cast<size_t>(n - 1)]});
    }
  }
  if (d.valid_samples.empty()) {
    return Status::InvalidArgument("dataset too small: no user has 3 or more interactions");
  }
  if (d.train_samples.empty() && options.need_training_samples) {
    // A training sample needs 2 kept training items of one user (the first is only a prefix).
    if (std::none_of(n_train.begin(), n_train.end(), [](int32_t n) { return n >= 2; })) {
      return Status::InvalidArgument(
          "dataset too small: no training sample: every user has 1 or 3 interactions (a sample needs 2 training "
          "items of one user: a user of 4 or more trains on all but its last 2, a user of 2 on both)");
    }
    // Only a train_fraction < 1 keeps fewer than n_train.
    std::ostringstream m;
    m << "train_fraction " << options.train_fraction << " leaves no training sample: the first " << keep << " of the "
      << train_events.size() << " training interactions hold no 2 of one user; raise train_fraction";
    return Status::InvalidArgument(m.str());
  }
  return d;
}

Result<StreamSplit> SplitStream(const std::vector<data::Interaction>& events, const SplitOptions& options) {
  GSAU_ASSIGN_OR_RETURN(auto d, BuildLeaveOneOut(events, options));
  // What the offline run keeps of each user: its graph pairs are that user's first kept items.
  std::vector<int32_t> kept(static_cast<size_t>(d.num_users), 0);
  for (const auto& p : d.train_pairs) ++kept[static_cast<size_t>(p.user)];
  std::vector<std::string> names;
  const auto rows = RowsByUser(events, &names);
  struct Ref {
    size_t event;
    int32_t user;
  };
  std::vector<Ref> offline, online;
  for (size_t u = 1; u < rows.size(); ++u) {
    const auto& r = rows[u];
    const auto n = static_cast<int32_t>(r.size());
    const int32_t end = n >= 3 ? n - 1 : n;  // the test item is held out
    for (int32_t t = 0; t < end; ++t) {
      (t < kept[u] ? offline : online).push_back({r[static_cast<size_t>(t)], static_cast<int32_t>(u)});
    }
  }
  auto ordered = [&](std::vector<Ref>& refs) {
    std::sort(refs.begin(), refs.end(), [&](const Ref& a, const Ref& b) {
      const auto& x = events[a.event];
      const auto& y = events[b.event];
      return StreamBefore(x.ts_ms, x.order, a.user, y.ts_ms, y.order, b.user);
    });
    std::vector<data::Interaction> out;
    out.reserve(refs.size());
    for (const auto& ref : refs) out.push_back(events[ref.event]);
    return out;
  };
  StreamSplit split;
  split.offline = ordered(offline);
  split.online = ordered(online);
  return split;
}

Result<LeaveOneOutData> LoadLeaveOneOut(const std::string& path, const std::string& times_path,
                                        const SplitOptions& options) {
  data::ReadOptions ro;
  ro.times_path = times_path;
  GSAU_ASSIGN_OR_RETURN(auto events, data::ReadInteractions(path, ro));
  auto d = BuildLeaveOneOut(events, options);
  if (!d.ok()) return d.status().WithContext(path);
  return d;
}

}  // namespace gsau::learner
