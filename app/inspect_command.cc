// gsau inspect: what the pipeline holds, from its state store (opened read-only, so a running
// pipeline's store can be looked at too) and its newest checkpoint's model: state statistics,
// a user's session and top-K items, an item's nearest items.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "commands.h"
#include "config_flags.h"
#include "gsau/common/log.h"
#include "gsau/common/text.h"
#include "gsau/learner/online.h"
#include "gsau/pipeline/checkpoints.h"
#include "gsau/state/state_store.h"
#include "pipeline_config.h"

namespace gsau::app {
namespace {

namespace fs = std::filesystem;

struct InspectFlags {
  ConfigFlags config;
  std::string dir;  // a demo directory: dir/state, dir/checkpoints
  std::string state_path;
  std::string checkpoint_dir;
  std::vector<std::string> users;
  std::vector<std::string> items;
  int k = 10;
};

std::string FormatTime(int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

class Inspector {
 public:
  Inspector(const state::StateStore& store, learner::OnlineLearner* model, int k)
      : store_(store), model_(model), k_(k) {}

  void PrintState(const std::string& path) const {
    const auto c = store_.Counts();
    std::printf("state %s (read-only)\n  batch %llu: %llu users, %llu items, %llu edges, %llu clicks\n",
                path.c_str(), static_cast<unsigned long long>(c.batch_seq),
                static_cast<unsigned long long>(c.users), static_cast<unsigned long long>(c.items),
                static_cast<unsigned long long>(c.edges), static_cast<unsigned long long>(c.events));
    if (auto bytes = store_.DiskBytes(); bytes.ok()) {
      std::printf("  on disk: %.1f MiB\n", static_cast<double>(*bytes) / (1 << 20));
    }
    for (const auto& po : store_.Offsets()) {
      std::printf("  next offset %s[%d] = %lld\n", po.tp.topic.c_str(), po.tp.partition,
                  static_cast<long long>(po.next_offset));
    }
    // The most clicked items: what a most-popular ranking would show.
    std::vector<state::ItemId> items(c.items);
    std::iota(items.begin(), items.end(), state::ItemId{0});
    const size_t n = std::min<size_t>(static_cast<size_t>(k_), items.size());
    std::partial_sort(items.begin(), items.begin() + static_cast<long>(n), items.end(),
                      [&](state::ItemId a, state::ItemId b) {
                        return store_.ItemStats(a).clicks > store_.ItemStats(b).clicks;
                      });
    std::printf("  most clicked items:");
    for (size_t j = 0; j < n; ++j) {
      std::printf(" %s (%llu)", ItemName(items[j]).c_str(),
                  static_cast<unsigned long long>(store_.ItemStats(items[j]).clicks));
    }
    std::printf("\n");
  }

  Status PrintUser(const std::string& external) const {
    const auto u = store_.FindUser(external);
    if (!u) {
      return Status::NotFound("no user '" + DisplayText(external) + "' in the state" +
                              Examples(store_.Counts().users, "users", [&](uint32_t id) {
                                auto name = store_.UserExternalId(id);
                                return name.ok() ? DisplayText(*name) : "#" + std::to_string(id);
                              }));
    }
    GSAU_ASSIGN_OR_RETURN(auto session, store_.Session(*u));
    const auto st = store_.UserStats(*u);
    std::printf("user %s (id %u): %llu clicks on %u items; session (last %zu, oldest first):\n",
                DisplayText(external).c_str(), *u,
                static_cast<unsigned long long>(st.clicks), st.degree, session.size());
    std::vector<uint32_t> items;
    for (const auto& e : session) {
      std::printf("  %s  %s\n", FormatTime(e.ts_ms).c_str(), ItemName(e.item).c_str());
      items.push_back(e.item);
    }
    if (model_ == nullptr) return Status::Ok();
    const auto serving = model_->Serving();
    // Items the checkpoint's model has not seen yet cannot be embedded: leave them out.
    std::erase_if(items, [&](uint32_t i) { return static_cast<int64_t>(i) >= serving->items(); });
    if (items.empty()) {
      std::printf("  top-%d: none (the checkpoint's model knows none of the session's items)\n", k_);
      return Status::Ok();
    }
    GSAU_ASSIGN_OR_RETURN(auto top, serving->TopK(std::span(&items, 1), k_));
    std::printf("  top-%d items for the next click (* = already in the session):\n", k_);
    for (size_t r = 0; r < top[0].size(); ++r) {
      const uint32_t i = top[0][r];
      const bool seen = std::find(items.begin(), items.end(), i) != items.end();
      std::printf("  %2zu. %s%s\n", r + 1, ItemName(i).c_str(), seen ? " *" : "");
    }
    return Status::Ok();
  }

  Status PrintItem(const std::string& external) const {
    const auto item = store_.FindItem(external);
    if (!item) {
      return Status::NotFound("no item '" + DisplayText(external) + "' in the state" +
                              Examples(store_.Counts().items, "items", [&](uint32_t id) { return ItemName(id); }));
    }
    const auto st = store_.ItemStats(*item);
    std::printf("item %s (id %u): %llu clicks by %u users\n", DisplayText(external).c_str(), *item,
                static_cast<unsigned long long>(st.clicks), st.degree);
    if (model_ == nullptr) return Status::Ok();
    const int64_t n = model_->Stats().items;
    if (*item >= n) {
      std::printf("  nearest items: none (the checkpoint's model has not seen this item)\n");
      return Status::Ok();
    }
    std::vector<uint32_t> ids(static_cast<size_t>(n));
    std::iota(ids.begin(), ids.end(), 0u);
    GSAU_ASSIGN_OR_RETURN(auto rows, model_->ItemEmbeddings(ids));
    const auto dim = rows.size() / ids.size();
    auto row = [&](uint32_t i) { return std::span<const float>(rows).subspan(i * dim, dim); };
    auto norm = [](std::span<const float> v) {
      double s = 0;
      for (float x : v) s += static_cast<double>(x) * x;
      return std::sqrt(s);
    };
    const auto q = row(*item);
    const double qn = norm(q);
    std::vector<std::pair<double, uint32_t>> cos;
    for (uint32_t i : ids) {
      if (i == *item) continue;
      const auto v = row(i);
      double dot = 0;
      for (size_t d = 0; d < dim; ++d) dot += static_cast<double>(q[d]) * v[d];
      const double vn = norm(v);
      cos.push_back({qn > 0 && vn > 0 ? dot / (qn * vn) : 0.0, i});
    }
    const size_t top = std::min<size_t>(static_cast<size_t>(k_), cos.size());
    std::partial_sort(cos.begin(), cos.begin() + static_cast<long>(top), cos.end(), std::greater<>());
    std::printf("  nearest items (cosine of the item table rows):\n");
    for (size_t r = 0; r < top; ++r) {
      std::printf("  %2zu. %-24s %.3f\n", r + 1, ItemName(cos[r].second).c_str(), cos[r].first);
    }
    return Status::Ok();
  }

 private:
  // " (it has N <what>, e.g. a, b, c)": a mistyped id is easier to see next to real ones (the
  // README's `--user u1` is one a short demo may not have had).
  static std::string Examples(uint64_t n, const char* what, const std::function<std::string(uint32_t)>& name_of) {
    if (n == 0) return std::string(" (it has no ") + what + ")";
    std::string out = " (it has " + std::to_string(n) + " " + what + ", e.g.";
    for (uint32_t id = 0; id < std::min<uint64_t>(n, 3); ++id) out += (id == 0 ? " " : ", ") + name_of(id);
    return out + ")";
  }

  std::string ItemName(state::ItemId i) const {
    auto name = store_.ItemExternalId(i);
    return name.ok() ? DisplayText(*name) : "#" + std::to_string(i);  // (ids are bytes: an ESC drives the terminal)
  }

  const state::StateStore& store_;
  learner::OnlineLearner* model_;
  int k_;
};

int RunInspect(const InspectFlags& f) {
  if (MaybePrintConfigHelp(f.config)) return kExitOk;
  auto cfg = LoadConfig("inspect", f.config);
  if (!cfg.ok()) return kExitUsage;  // its learner runs on the CPU, whatever learner.device says
  config::Config c = *cfg;
  if (!f.dir.empty()) {
    c.state.path = (fs::path(f.dir) / "state").string();
    c.learner.checkpoint_dir = (fs::path(f.dir) / "checkpoints").string();
  }
  if (!f.state_path.empty()) c.state.path = f.state_path;
  if (!f.checkpoint_dir.empty()) c.learner.checkpoint_dir = f.checkpoint_dir;

  state::StateOptions so = config::ToStateOptions(c);
  so.read_only = true;
  learner::OnlineOptions lo = ToOnlineOptions(c);
  lo.device = "cpu";
  // The checkpoints are listed before the store is opened: one that a running pipeline writes
  // while Open scans the edges would be ahead of the batch the store was opened at, and look like
  // another deployment's. The pipeline prunes the oldest checkpoints as it writes new ones, so the
  // newest listed can be gone by the time it is read (checkpoint_keep 1): then all three steps
  // are taken again, a few times.
  std::vector<std::string> checkpoints;
  uint64_t unreadable_batch = 0;  // the newest unreadable checkpoint's, passed over
  Result<std::unique_ptr<state::StateStore>> store = Status::NotFound("not opened");
  std::unique_ptr<learner::OnlineLearner> model;
  Result<learner::OnlineWatermark> wm = Status::NotFound("no checkpoint");
  for (int attempt = 1;; ++attempt) {
    checkpoints = pipeline::ListCheckpointsAsRecovered(c.learner.checkpoint_dir);
    store = state::StateStore::Open(so);
    if (!store.ok()) {
      std::cerr << "gsau inspect: " << store.status().ToString() << "\n";
      return kExitFailure;
    }
    if (checkpoints.empty()) break;
    // In the checkpoint's own model shape: without the run's configuration (its embedding_dim,
    // say) the load failed as "written for another model shape".
    auto loaded = learner::OnlineLearner::OpenCheckpoint(lo, (fs::path(checkpoints.back()) / "model.pt").string());
    // One that is not a readable checkpoint (cut short): the one before it, as gsau run's start
    // takes it, saying so.
    while (!loaded.ok() && loaded.status().code() == StatusCode::kCorruption && checkpoints.size() > 1) {
      std::printf("warning: %s cannot be read (%s); showing the one before it\n",
                  checkpoints.back().c_str(), loaded.status().message().c_str());
      unreadable_batch = std::max(unreadable_batch, pipeline::CheckpointBatch(checkpoints.back()));
      checkpoints.pop_back();
      loaded = learner::OnlineLearner::OpenCheckpoint(lo, (fs::path(checkpoints.back()) / "model.pt").string());
    }
    if (loaded.ok()) {
      model = std::move(loaded->learner);
      wm = loaded->watermark;
    } else {
      model.reset();
      wm = loaded.status();
    }
    const bool pruned = !wm.ok() && wm.status().code() == StatusCode::kNotFound && !fs::exists(checkpoints.back());
    if (!pruned || attempt == 3) break;
    std::printf("note: %s was removed (pruned by a running pipeline) while inspect read it; looking again\n",
                checkpoints.back().c_str());
  }

  if (const auto target = pipeline::UnfinishedRollback(c.learner.checkpoint_dir)) {
    // Half-way, the newest checkpoint left and the state there need not belong together.
    std::printf("warning: a rollback to %s did not finish: the model and the state below may not belong together "
                "(`gsau run --rollback %s` finishes it)\n",
                target->c_str(), target->c_str());
  }
  if (checkpoints.empty()) {
    std::printf("no checkpoint in %s: state only\n", c.learner.checkpoint_dir.c_str());
  } else {
    if (!wm.ok()) {
      std::cerr << "gsau inspect: " << wm.status().ToString() << "\n";
      return kExitFailure;
    }
    const auto st = model->Stats();
    std::printf("model %s: state batch %llu, model_version %lld, %lld steps, %lld users, %lld items\n",
                checkpoints.back().c_str(), static_cast<unsigned long long>(wm->state_batch_seq),
                static_cast<long long>(wm->model_version), static_cast<long long>(st.steps),
                static_cast<long long>(st.users), static_cast<long long>(st.items));
    const auto counts = (*store)->Counts();
    if (counts.batch_seq < unreadable_batch) {
      // gsau run refuses this pair: the state lost batches the unreadable model had seen.
      std::printf("warning: the state (batch %llu) is behind the unreadable checkpoint (batch %llu): `gsau run` "
                  "refuses to start from it; restore a pair with `gsau run --rollback`\n",
                  static_cast<unsigned long long>(counts.batch_seq), static_cast<unsigned long long>(unreadable_batch));
    }
    if (counts.batch_seq < wm->state_batch_seq || static_cast<uint64_t>(st.items) > counts.items ||
        static_cast<uint64_t>(st.users) > counts.users) {
      // A state behind its model (another deployment's, or replaced; gsau run refuses a state at
      // an earlier batch): the model's rows would be named by ids that mean others here.
      std::printf("warning: the state (batch %llu, %llu users, %llu items) is behind this model (batch %llu, %lld "
                  "users, %lld items): they do not belong together, and what follows names the model's rows by "
                  "another state's ids\n",
                  static_cast<unsigned long long>(counts.batch_seq), static_cast<unsigned long long>(counts.users),
                  static_cast<unsigned long long>(counts.items), static_cast<unsigned long long>(wm->state_batch_seq),
                  static_cast<long long>(st.users), static_cast<long long>(st.items));
    }
  }

  Inspector in(**store, model.get(), f.k);
  in.PrintState(c.state.path);
  int rc = kExitOk;
  for (const auto& u : f.users) {
    if (Status s = in.PrintUser(u); !s.ok()) {
      std::cerr << "gsau inspect: " << s.message() << "\n";
      rc = kExitFailure;
    }
  }
  for (const auto& i : f.items) {
    if (Status s = in.PrintItem(i); !s.ok()) {
      std::cerr << "gsau inspect: " << s.message() << "\n";
      rc = kExitFailure;
    }
  }
  std::fflush(stdout);
  return rc;
}

}  // namespace

void AddInspectCommand(CLI::App& root, int* exit_code) {
  auto flags = std::make_shared<InspectFlags>();
  auto* cmd = root.add_subcommand("inspect", "Show state statistics, a user's session and top-K items, an "
                                             "item's nearest items (state read-only + newest checkpoint)");
  cmd->add_option("--dir", flags->dir, "A demo directory (its state/ and checkpoints/)");
  cmd->add_option("--state", flags->state_path, "State store directory (default: state.path)");
  cmd->add_option("--checkpoints", flags->checkpoint_dir, "Checkpoint directory (default: learner.checkpoint_dir)");
  cmd->add_option("--user", flags->users, "External user id to show (repeatable)");
  cmd->add_option("--item", flags->items, "External item id to show (repeatable)");
  cmd->add_option("-k,--top", flags->k, "How many items to list (default 10)")->check(CLI::Range(1, 1000));
  AddConfigFlags(cmd, &flags->config);
  cmd->callback([flags, exit_code] { *exit_code = RunInspect(*flags); });
}

}  // namespace gsau::app
