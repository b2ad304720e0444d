// Process memory: what the OS holds for the process and what its allocator holds unused.
//
// The allocator keeps freed pages for reuse and returns them to the OS later (jemalloc, gsau's
// default, after ~10 s; see README, "Allocator"): resident memory is not what the program uses.
// ReadProcessMemory tells the two apart. It finds the allocator the process runs on at run time
// (jemalloc's mallctl, tcmalloc's C API) and falls back to glibc's malloc otherwise. Thread-safe.
#pragma once

#include <cstdint>

namespace gsau {

struct ProcessMemory {
  int64_t resident_bytes = -1;        // VmRSS (/proc/self/statm); -1 when unreadable
  int64_t heap_allocated_bytes = -1;  // bytes the program has allocated and not freed
  int64_t heap_free_bytes = -1;       // bytes the allocator holds mapped but unused
  const char* allocator = "unknown";  // "jemalloc", "tcmalloc" or "glibc"
};

ProcessMemory ReadProcessMemory();

}  // namespace gsau
