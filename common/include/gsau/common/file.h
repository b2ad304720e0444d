// Small file-system helpers shared by the modules that write durable files.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "gsau/common/status.h"

namespace gsau {

// fsync of a file, or of a folder (which makes the renames and creations in it durable). IoError
// naming the path when it cannot be opened or synced.
Status SyncPath(const std::string& path);

// Where WriteFileAtomically's producer writes: it takes every byte it is given and returns the
// count even after a write failed (the failure comes back from WriteFileAtomically), so that a
// caller checking the count cannot throw. LibTorch's archive writer throws from a destructor
// on a short write, and the process aborts: a full disk must be an error, not a crash.
using ByteSink = std::function<size_t(const void* data, size_t n)>;

// Writes `path` through `produce` into `path`.tmp, fsyncs it, renames it over `path` and
// fsyncs the folder: a crash leaves the old file or the new one, whole. On any failure (the
// disk full, an exception from `produce`) the temporary file is removed, `path` is untouched,
// and an IoError names the file and the first error.
Status WriteFileAtomically(const std::string& path, const std::function<void(const ByteSink&)>& produce);

}  // namespace gsau
