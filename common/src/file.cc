#include "gsau/common/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>

namespace gsau {

Status SyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError("opening " + path + " to sync it: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::IoError("fsync of " + path + ": " + std::strerror(err));
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, const std::function<void(const ByteSink&)>& produce) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError("creating " + tmp + ": " + std::strerror(errno));
  std::string error;  // the first failure
  const ByteSink sink = [&](const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    for (size_t left = n; left > 0 && error.empty();) {
      const ssize_t w = ::write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        error = std::strerror(errno);
        break;
      }
      p += w;
      left -= static_cast<size_t>(w);
    }
    return n;
  };
  try {
    produce(sink);
  } catch (const std::exception& e) {
    if (error.empty()) error = e.what();
  }
  if (error.empty() && ::fsync(fd) != 0) error = std::string("fsync: ") + std::strerror(errno);
  if (::close(fd) != 0 && error.empty()) error = std::string("close: ") + std::strerror(errno);
  std::error_code ec;
  if (error.empty()) {
    std::filesystem::rename(tmp, path, ec);
    if (ec) error = "renaming it to " + path + ": " + ec.message();
  }
  if (!error.empty()) {
    std::filesystem::remove(tmp, ec);
    return Status::IoError("writing " + tmp + ": " + error);
  }
  const std::string folder = std::filesystem::path(path).parent_path().string();
  return SyncPath(folder.empty() ? "." : folder);
}

}  // namespace gsau
