#include "gsau/common/file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
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

namespace {

// The mount (or, without statx's mount id, the device) of `path` or of its nearest existing
// ancestor.
Result<uint64_t> MountOf(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path.empty() ? "." : path, ec);
  if (ec) return Status::IoError("examining " + path + ": " + ec.message());
  while (true) {
    struct statx stx {};
    if (::statx(AT_FDCWD, p.c_str(), 0, STATX_MNT_ID, &stx) == 0) {
      if (stx.stx_mask & STATX_MNT_ID) return stx.stx_mnt_id;
      return (uint64_t{stx.stx_dev_major} << 32) | stx.stx_dev_minor;
    }
    const int err = errno;
    if (err != ENOENT || !p.has_relative_path()) {
      return Status::IoError("examining " + p.string() + " (for " + path + "): " + std::strerror(err));
    }
    p = p.parent_path();
  }
}

}  // namespace

Result<bool> SameMount(const std::string& a, const std::string& b) {
  GSAU_ASSIGN_OR_RETURN(const uint64_t ma, MountOf(a));
  GSAU_ASSIGN_OR_RETURN(const uint64_t mb, MountOf(b));
  return ma == mb;
}

Status WriteTextAtomically(const std::string& path, std::string_view text) {
  return WriteFileAtomically(path, [&](const ByteSink& sink) { sink(text.data(), text.size()); });
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
      if (w <= 0) {
        error = w < 0 ? std::strerror(errno) : "write wrote nothing";
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
  } catch (...) {
    if (error.empty()) error = "an exception that is not a std::exception";
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

Result<FileLock> FileLock::Take(const std::string& path, const std::string& what_for) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError("opening " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[32] = {};
    const ssize_t n = ::pread(fd, holder, sizeof(holder) - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK) return Status::IoError("locking " + path + ": " + std::strerror(err));
    std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : std::string();
    while (!who.empty() && (who.back() == '\n' || who.back() == '\0')) who.pop_back();
    return Status::Unavailable(path + " is locked" + (who.empty() ? "" : " by process " + who) + ": " + what_for);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The pid is only for the next one's message; the lock holds without it.
  }
  return FileLock(fd);
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace gsau
