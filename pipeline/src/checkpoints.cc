#include "gsau/pipeline/checkpoints.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <system_error>

#include "gsau/common/file.h"
#include "gsau/common/log.h"

namespace gsau::pipeline {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTmpSuffix = ".tmp";
// In checkpoint_dir from the first step of a rollback until the restored pair is in place: a
// rollback stopped half-way (state moved aside, checkpoints moved aside, a copy cut short) must
// not be taken by a plain start for a cold one. Holds the target's path.
constexpr const char* kRollbackMarker = "ROLLBACK_IN_PROGRESS";
constexpr std::string_view kReplacedSuffix = ".replaced";

// ckpt-<digits> and nothing else: not a checkpoint being built (.tmp) or retired (.replaced).
bool IsCheckpointName(std::string_view name) {
  constexpr std::string_view prefix = "ckpt-";
  if (!name.starts_with(prefix) || name.size() == prefix.size()) return false;
  return std::all_of(name.begin() + static_cast<long>(prefix.size()), name.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<std::string> Checkpoints(const std::string& dir, bool as_recovered) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  // The calls that do not throw: an entry stat() refuses (a checkpoint copied in by another user,
  // a stale network handle) threw out of the learner's interval checkpoint and ended the pipeline.
  // Such an entry is left out, as one without model.pt is, and named in the log.
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code entry_ec;
    const fs::path& path = it->path();
    if (!it->is_directory(entry_ec) || !fs::exists(path / "model.pt", entry_ec)) {
      if (entry_ec) GSAU_LOG_WARN("pipeline: {} left out of the checkpoints: {}", path.string(), entry_ec.message());
      continue;
    }
    const std::string name = path.filename().string();
    if (IsCheckpointName(name)) {
      out.push_back(path.string());
    } else if (const size_t base = name.size() - kReplacedSuffix.size();
               as_recovered && name.ends_with(kReplacedSuffix) && IsCheckpointName(name.substr(0, base)) &&
               !fs::exists(path.parent_path() / name.substr(0, base) / "model.pt", entry_ec)) {
      out.push_back(path.string());  // RecoverCheckpoints would put it back
    }
  }
  if (ec) GSAU_LOG_WARN("listing the checkpoints in {}: {}: the list may be short", dir, ec.message());
  // Zero-padded sequence numbers: oldest first (a ".replaced" stands where its twin is not).
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<std::string> ListCheckpoints(const std::string& dir) { return Checkpoints(dir, false); }

uint64_t CheckpointBatch(const std::string& path) {
  std::string name = fs::path(path).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(path).lexically_normal().parent_path().filename().string();  // "<dir>/ckpt-1/"
  if (name.ends_with(kReplacedSuffix)) name.resize(name.size() - kReplacedSuffix.size());
  if (!IsCheckpointName(name) || name.size() > 5 + 20) return 0;
  return std::strtoull(name.c_str() + 5, nullptr, 10);
}

std::vector<std::string> ListCheckpointsAsRecovered(const std::string& dir) { return Checkpoints(dir, true); }

Status InstallCheckpoint(const std::string& built, const std::string& final_dir) {
  std::error_code ec;
  const std::string replaced = final_dir + std::string(kReplacedSuffix);
  if (fs::exists(final_dir, ec)) {
    // Renamed, not removed, until the new one is in place: with checkpoint_keep = 1 it may be
    // the only checkpoint there is.
    fs::remove_all(replaced, ec);
    fs::rename(final_dir, replaced, ec);
    if (ec) return Status::IoError("renaming " + final_dir + " aside: " + ec.message());
  }
  fs::rename(built, final_dir, ec);
  if (ec) {
    const std::string why = ec.message();
    if (fs::exists(replaced, ec)) fs::rename(replaced, final_dir, ec);
    return Status::IoError("renaming " + built + " to " + final_dir + ": " + why);
  }
  // Checkpoints are what a --rollback restores after the state was lost, a power cut included:
  // the rename must be on disk before the old one goes.
  GSAU_RETURN_IF_ERROR(SyncPath(fs::path(final_dir).parent_path().string()));
  fs::remove_all(replaced, ec);
  return Status::Ok();
}

int PruneCheckpoints(const std::string& dir, int keep) {
  const auto all = ListCheckpoints(dir);
  int removed = 0;
  for (size_t k = 0; k + static_cast<size_t>(std::max(keep, 0)) < all.size(); ++k) {
    std::error_code ec;
    const std::string doomed = all[k] + std::string(kTmpSuffix);
    fs::rename(all[k], doomed, ec);
    Status s = ec ? Status::IoError("renaming it to " + doomed + ": " + ec.message()) : SyncPath(dir);
    if (s.ok() && (fs::remove_all(doomed, ec), ec)) s = Status::IoError(ec.message());
    if (!s.ok()) {
      // Left for the next checkpoint to remove (or, renamed, for the next start); meanwhile it
      // takes disk space.
      GSAU_LOG_WARN("pipeline: removing the old checkpoint {}: {}", all[k], s.message());
      continue;
    }
    ++removed;
  }
  return removed;
}

std::optional<std::string> UnfinishedRollback(const std::string& checkpoint_dir) {
  std::ifstream marker(fs::path(checkpoint_dir) / kRollbackMarker);
  if (!marker) return std::nullopt;
  std::string target;
  std::getline(marker, target);
  return target;
}

Result<int> RecoverCheckpoints(const std::string& dir) {
  int restored = 0;
  std::error_code ec;
  auto failed = [&](const std::string& what, const fs::path& p) {
    return Status::IoError("checkpoints: " + what + " " + p.string() + ": " + ec.message());
  };
  if (!fs::is_directory(dir, ec)) {
    if (ec && ec != std::errc::no_such_file_or_directory) return failed("reading", dir);
    return restored;
  }
  std::vector<fs::path> entries;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) entries.push_back(it->path());
  if (ec) return failed("listing", dir);
  // Each failure stops the start: a checkpoint left aside would let it start from an older one
  // (or none), and a half-built one holds the disk space the state's open checks for.
  for (const auto& p : entries) {
    const std::string name = p.filename().string();
    if (name.ends_with(kTmpSuffix) && IsCheckpointName(name.substr(0, name.size() - kTmpSuffix.size()))) {
      fs::remove_all(p, ec);  // never renamed into place: incomplete, or complete with its twin there
      if (ec) return failed("removing", p);
    } else if (name.ends_with(kReplacedSuffix) &&
               IsCheckpointName(name.substr(0, name.size() - kReplacedSuffix.size()))) {
      const fs::path twin = p.parent_path() / name.substr(0, name.size() - kReplacedSuffix.size());
      const bool successor = fs::exists(twin / "model.pt", ec);
      if (ec) return failed("reading", twin);
      const bool complete = !successor && fs::exists(p / "model.pt", ec);
      if (ec) return failed("reading", p);
      if (successor) {
        fs::remove_all(p, ec);  // its successor made it
        if (ec) return failed("removing", p);
      } else if (complete) {
        fs::remove_all(twin, ec);
        if (ec) return failed("removing the incomplete", twin);
        fs::rename(p, twin, ec);
        if (ec) return failed("putting back", p);
        ++restored;
      }
    }
  }
  return restored;
}

Status WriteRollbackMarker(const std::string& checkpoint_dir, const std::string& target) {
  std::error_code ec;
  fs::create_directories(checkpoint_dir, ec);
  if (ec) return Status::IoError("rollback: creating " + checkpoint_dir + ": " + ec.message());
  // Absolute: a restart may run elsewhere.
  const std::string absolute = fs::absolute(target, ec).lexically_normal().string() + "\n";
  if (ec) return Status::IoError("rollback: " + target + ": " + ec.message());
  const Status s = WriteTextAtomically(RollbackMarkerPath(checkpoint_dir), absolute);
  if (!s.ok()) return Status::IoError("rollback: " + s.message());
  return Status::Ok();
}

Status ClearRollbackMarker(const std::string& checkpoint_dir) {
  std::error_code ec;
  fs::remove(RollbackMarkerPath(checkpoint_dir), ec);
  if (ec) return Status::IoError("rollback: removing its marker: " + ec.message());
  return SyncPath(checkpoint_dir);
}

std::string RollbackMarkerPath(const std::string& checkpoint_dir) {
  return (fs::path(checkpoint_dir) / kRollbackMarker).string();
}

std::string CheckpointPath(const std::string& dir, uint64_t batch) {
  char name[64];
  std::snprintf(name, sizeof name, "ckpt-%012llu", static_cast<unsigned long long>(batch));
  return (fs::path(dir) / name).string();
}

std::string CheckpointBuildPath(const std::string& checkpoint_path) {
  return checkpoint_path + std::string(kTmpSuffix);
}

}  // namespace gsau::pipeline
