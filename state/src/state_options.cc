#include "gsau/state/state_options.h"

namespace gsau::state {

Status StateOptions::Validate() const {
  if (path.empty()) return Status::InvalidArgument("state options: path is empty");
  if (session_length < 1) return Status::InvalidArgument("state options: session_length must be >= 1");
  if (write_buffer_bytes < (1 << 20)) {
    return Status::InvalidArgument("state options: write_buffer_bytes must be >= 1 MiB");
  }
  if (max_write_buffer_number < 2) {
    return Status::InvalidArgument("state options: max_write_buffer_number must be >= 2");
  }
  if (changelog_retention_batches < 1) {
    return Status::InvalidArgument("state options: changelog_retention_batches must be >= 1");
  }
  if (sync && !wal && !read_only) {
    // RocksDB would refuse every write ("Sync writes has to enable WAL"), after Open succeeded.
    return Status::InvalidArgument("state options: sync needs wal (it fsyncs the write-ahead log)");
  }
  if (max_background_jobs < 1) {
    return Status::InvalidArgument("state options: max_background_jobs must be >= 1");
  }
  return Status::Ok();
}

}  // namespace gsau::state
