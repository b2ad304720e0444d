// Process memory: what the OS holds for the process and what its allocator holds unused.
//
// The allocator keeps freed pages for reuse (see README, "Allocator"): resident memory is not
// what the program uses. ReadProcessMemory tells the two apart; ReleaseFreeMemory hands the
// unused pages back. Both find the allocator the process runs on at run time (jemalloc's
// mallctl, tcmalloc's C API) and fall back to glibc's malloc otherwise; in an ASan or TSan
// build they ask the sanitizer's allocator, which serves malloc there. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace gsau {

struct ProcessMemory {
  int64_t resident_bytes = -1;        // VmRSS (/proc/self/statm); -1 when unreadable
  int64_t heap_allocated_bytes = -1;  // bytes the program has allocated and not freed
  int64_t heap_free_bytes = -1;       // bytes the allocator holds mapped but unused
  const char* allocator = "unknown";  // "jemalloc", "tcmalloc", "glibc" or "sanitizer"
};

ProcessMemory ReadProcessMemory();

// Returns the allocator's unused pages to the OS (jemalloc: purge of every arena; tcmalloc:
// MallocExtension_ReleaseFreeMemory; glibc: malloc_trim; a sanitizer's: nothing, as it manages
// its heap itself, ASan keeping freed memory in quarantine). Costs page faults when the memory
// is needed again: call it every few seconds at most.
void ReleaseFreeMemory();

// Calls ReleaseFreeMemory every `interval` on a thread of its own, from construction until
// destruction; the destructor returns at once, without waiting out the interval. jemalloc runs
// with decay-based purging off (common/src/jemalloc_conf.cc), so in a process without one of
// these nothing hands freed pages back: a 1-thread Toys `gsau train` grew to 18 GB resident in
// 70 epochs, its live heap under 1 GB. Not copyable; releases() is thread-safe.
class MemoryReleaser {
 public:
  explicit MemoryReleaser(std::chrono::milliseconds interval = std::chrono::seconds(10));
  ~MemoryReleaser();
  MemoryReleaser(const MemoryReleaser&) = delete;
  MemoryReleaser& operator=(const MemoryReleaser&) = delete;

  // Purges done so far.
  int64_t releases() const;

 private:
  void Loop(std::chrono::milliseconds interval);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int64_t releases_ = 0;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace gsau
