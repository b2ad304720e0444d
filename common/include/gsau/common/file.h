// Small file-system helpers shared by the modules that write durable files.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

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

// WriteFileAtomically of `text`.
Status WriteTextAtomically(const std::string& path, std::string_view text);

// Whether `a` and `b` lie on one mount, where a hard link from one to the other can be made
// (Linux refuses links across mounts, two bind mounts of one filesystem included): compares
// mount ids, or devices where the kernel gives no mount id. A path not there yet counts as its
// nearest existing ancestor's ("" as "."), symbolic links followed. IoError naming the path
// when it cannot be examined.
Result<bool> SameMount(const std::string& a, const std::string& b);

// An exclusive lock on a file (flock, created when missing), held until destruction: between
// processes, and between two locks of one process. Move-only; one object is not for sharing
// between threads (the lock it holds excludes every other holder, in any thread).
class FileLock {
 public:
  // Unavailable when someone holds it (the message names `path` and `what_for`); IoError when
  // the file cannot be opened. Writes this process's id into the file for the next one's message.
  static Result<FileLock> Take(const std::string& path, const std::string& what_for);
  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace gsau
