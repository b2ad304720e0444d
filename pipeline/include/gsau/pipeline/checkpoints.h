// The learner's checkpoint folder as files on disk: which checkpoints are complete, how one is
// put in place and old ones removed so that a stop at any moment leaves a complete one, what a
// stop part-way leaves and how it is mended, and the marker of a rollback in progress. What a
// checkpoint holds (model.pt, state/, users_published_through) is the pipeline's (pipeline.h).
//
// Layout: <dir>/ckpt-<state batch seq, 12 digits or more>/ (complete when model.pt is there),
// built as <name>.tmp and renamed; <name>.replaced while InstallCheckpoint replaces a checkpoint
// of the same batch; <dir>/ROLLBACK_IN_PROGRESS holding a rollback's target.
//
// Thread safety: no state is kept; calls that write to one `dir` must not overlap (the pipeline
// that owns it is its only writer).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gsau/common/status.h"

namespace gsau::pipeline {

// The complete checkpoints (ckpt-<digits>/model.pt) under `dir`, oldest first; none when `dir`
// does not exist.
std::vector<std::string> ListCheckpoints(const std::string& dir);
// The state batch a checkpoint's folder name gives (<dir>/ckpt-<digits>, or its .replaced); 0
// for any other name.
uint64_t CheckpointBatch(const std::string& path);
// The same as RecoverCheckpoints would leave them, without touching `dir`: a complete
// <name>.replaced whose <name> is not complete (a stop inside InstallCheckpoint) is listed, under
// its own path, in its place. For readers beside a stopped or running pipeline (inspect, evaluate).
std::vector<std::string> ListCheckpointsAsRecovered(const std::string& dir);

// The checkpoint a rollback marked in `checkpoint_dir` (ROLLBACK_IN_PROGRESS) and did not
// finish, as the marker names it; none when there is no marker.
std::optional<std::string> UnfinishedRollback(const std::string& checkpoint_dir);

// Puts the checkpoint built in `built` (a sibling folder) in place as `final_dir`. One already
// there (the same state batch, an older model) is renamed to <final_dir>.replaced and removed
// only after the new one is in place, so that a stop at any point leaves a complete checkpoint
// under one of the two names. Not thread-safe for the same `final_dir`.
Status InstallCheckpoint(const std::string& built, const std::string& final_dir);

// Removes all but the newest `keep` complete checkpoints under `dir`. Each is first renamed to
// <name>.tmp (and the rename synced), so that a stop part-way through the removal leaves no
// folder that still looks complete (model.pt there, state files gone) to be offered as a
// rollback target; RecoverCheckpoints removes what is left. Returns the number removed; a
// failure is logged and the checkpoint left for the next call.
int PruneCheckpoints(const std::string& dir, int keep);

// Mends what a stop inside InstallCheckpoint or a checkpoint's build leaves under `dir`: a
// <name>.replaced whose <name> is missing or incomplete is renamed back, one whose <name> is
// complete removed, and <name>.tmp folders (never put in place) removed. Returns the number
// put back (0 when `dir` does not exist); kIoError naming the path when one of these steps
// fails (the pipeline then does not start). Call only while no other process checkpoints into
// `dir`.
Result<int> RecoverCheckpoints(const std::string& dir);

// Marks a rollback to `target` (a checkpoint folder, stored as an absolute path) in
// `checkpoint_dir`, creating the folder; the marker is written whole or not at all (a crash
// before its fsync must not leave one naming no target).
Status WriteRollbackMarker(const std::string& checkpoint_dir, const std::string& target);
// Removes the marker (none there is fine) and syncs the folder.
Status ClearRollbackMarker(const std::string& checkpoint_dir);
// The marker's path in `checkpoint_dir`, for messages that tell an operator what to delete.
std::string RollbackMarkerPath(const std::string& checkpoint_dir);

// The folder a checkpoint of state batch `batch` goes to under `dir` (ckpt-<12 digits or more>)
// and the sibling it is built in first (<that>.tmp: never offered as a checkpoint;
// RecoverCheckpoints removes one a stop left).
std::string CheckpointPath(const std::string& dir, uint64_t batch);
std::string CheckpointBuildPath(const std::string& checkpoint_path);

}  // namespace gsau::pipeline
