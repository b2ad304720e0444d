// Small file-system helpers shared by the modules that write durable files.
#pragma once

#include <string>

#include "gsau/common/status.h"

namespace gsau {

// fsync of a file, or of a folder (which makes the renames and creations in it durable). IoError
// naming the path when it cannot be opened or synced.
Status SyncPath(const std::string& path);

}  // namespace gsau
