#include "gsau/common/memory.h"

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>

namespace gsau {
namespace {

// gperftools' C API (malloc_extension_c.h), looked up so that nothing links against it.
using GetNumericProperty = int (*)(const char*, size_t*);
using ReleaseAll = void (*)();

GetNumericProperty TcmallocProperty() {
  static const auto f = reinterpret_cast<GetNumericProperty>(dlsym(RTLD_DEFAULT, "MallocExtension_GetNumericProperty"));
  return f;
}

int64_t Property(GetNumericProperty get, const char* name) {
  size_t v = 0;
  return get(name, &v) ? static_cast<int64_t>(v) : 0;
}

}  // namespace

ProcessMemory ReadProcessMemory() {
  ProcessMemory m;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    long size = 0, resident = 0;
    if (std::fscanf(f, "%ld %ld", &size, &resident) == 2) m.resident_bytes = resident * sysconf(_SC_PAGESIZE);
    std::fclose(f);
  }
  if (const auto get = TcmallocProperty()) {
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
  static const auto release = reinterpret_cast<ReleaseAll>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"));
  if (release != nullptr) {
    release();
  } else {
    malloc_trim(0);
  }
}

}  // namespace gsau
