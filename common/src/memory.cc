#include "gsau/common/memory.h"

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>

// Under ASan or TSan the sanitizer's allocator serves malloc: glibc's counters see nothing.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GSAU_SANITIZER_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define GSAU_SANITIZER_MALLOC 1
#endif
#endif
#ifdef GSAU_SANITIZER_MALLOC
// The sanitizer runtime's allocator statistics (sanitizer/allocator_interface.h, which GCC does
// not install).
extern "C" {
size_t __sanitizer_get_current_allocated_bytes();
size_t __sanitizer_get_heap_size();
}
#endif

namespace gsau {
namespace {

// gperftools' C API (malloc_extension_c.h), looked up so that nothing links against it.
using GetNumericProperty = int (*)(const char*, size_t*);
using ReleaseAll = void (*)();
// jemalloc's mallctl (jemalloc/jemalloc.h), likewise.
using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);

GetNumericProperty TcmallocProperty() {
  static const auto f = reinterpret_cast<GetNumericProperty>(dlsym(RTLD_DEFAULT, "MallocExtension_GetNumericProperty"));
  return f;
}

int64_t Property(GetNumericProperty get, const char* name) {
  size_t v = 0;
  return get(name, &v) ? static_cast<int64_t>(v) : 0;
}

// jemalloc's mallctl, when jemalloc is the malloc this process runs on (a library could export
// a mallctl of its own while another allocator serves malloc: they must come from one object).
Mallctl JemallocCtl() {
  static const Mallctl f = [] {
    void* ctl = dlsym(RTLD_DEFAULT, "mallctl");
    void* m = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info a{}, b{};
    if (ctl == nullptr || m == nullptr || dladdr(ctl, &a) == 0 || dladdr(m, &b) == 0 || a.dli_fbase != b.dli_fbase) {
      return static_cast<Mallctl>(nullptr);
    }
    return reinterpret_cast<Mallctl>(ctl);
  }();
  return f;
}

int64_t JemallocStat(Mallctl ctl, const char* name) {
  size_t v = 0, len = sizeof v;
  return ctl(name, &v, &len, nullptr, 0) == 0 ? static_cast<int64_t>(v) : 0;
}

}  // namespace

ProcessMemory ReadProcessMemory() {
  ProcessMemory m;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    long size = 0, resident = 0;
    if (std::fscanf(f, "%ld %ld", &size, &resident) == 2) m.resident_bytes = resident * sysconf(_SC_PAGESIZE);
    std::fclose(f);
  }
#ifdef GSAU_SANITIZER_MALLOC
  m.allocator = "sanitizer";
  m.heap_allocated_bytes = static_cast<int64_t>(__sanitizer_get_current_allocated_bytes());
  // The heap less what is allocated (TSan's __sanitizer_get_free_bytes is a stub returning 1).
  const auto heap = static_cast<int64_t>(__sanitizer_get_heap_size());
  m.heap_free_bytes = std::max<int64_t>(0, heap - m.heap_allocated_bytes);
  return m;
#endif
  if (const auto ctl = JemallocCtl()) {
    // Statistics are a snapshot taken when the epoch advances.
    uint64_t epoch = 1;
    size_t len = sizeof epoch;
    ctl("epoch", &epoch, &len, &epoch, len);
    m.allocator = "jemalloc";
    m.heap_allocated_bytes = JemallocStat(ctl, "stats.allocated");
    m.heap_free_bytes = std::max<int64_t>(0, JemallocStat(ctl, "stats.resident") - m.heap_allocated_bytes);
  } else if (const auto get = TcmallocProperty()) {
    m.allocator = "tcmalloc";
    m.heap_allocated_bytes = Property(get, "generic.current_allocated_bytes");
    m.heap_free_bytes = Property(get, "tcmalloc.pageheap_free_bytes") + Property(get, "tcmalloc.central_cache_free_bytes") +
                        Property(get, "tcmalloc.transfer_cache_free_bytes") +
                        Property(get, "tcmalloc.thread_cache_free_bytes");
  } else {
    const struct mallinfo2 mi = mallinfo2();
    m.allocator = "glibc";
    m.heap_allocated_bytes = static_cast<int64_t>(mi.uordblks + mi.hblkhd);
    m.heap_free_bytes = static_cast<int64_t>(mi.fordblks);
  }
  return m;
}

void ReleaseFreeMemory() {
#ifdef GSAU_SANITIZER_MALLOC
  return;  // the sanitizer's allocator keeps freed memory on purpose (ASan's quarantine)
#endif
  if (const auto ctl = JemallocCtl()) {
    ctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // 4096 = MALLCTL_ARENAS_ALL
    return;
  }
  static const auto release = reinterpret_cast<ReleaseAll>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"));
  if (release != nullptr) {
    release();
  } else {
    malloc_trim(0);
  }
}

MemoryReleaser::MemoryReleaser(std::chrono::milliseconds interval)
    : thread_([this, interval] { Loop(interval); }) {}

MemoryReleaser::~MemoryReleaser() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int64_t MemoryReleaser::releases() const {
  std::lock_guard<std::mutex> lock(mu_);
  return releases_;
}

void MemoryReleaser::Loop(std::chrono::milliseconds interval) {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, interval, [this] { return stop_; })) {
    // Not under the lock: a purge of every arena can take milliseconds.
    lock.unlock();
    ReleaseFreeMemory();
    lock.lock();
    ++releases_;
  }
}

}  // namespace gsau
