// Process memory: what the OS holds for the process and what its allocator holds unused.
//
// The allocator keeps freed pages for reuse (see README, "Allocator"): resident memory is not
// what the program uses. ReadProcessMemory tells the two apart; ReleaseFreeMemory hands the
// unused pages back. Both find the allocator the process runs on at run time (jemalloc's
// mallctl, tcmalloc's C API) and fall back to glibc's malloc otherwise. Thread-safe.
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

// Returns the allocator's unused pages to the OS (jemalloc: purge of every arena; tcmalloc:
// MallocExtension_ReleaseFreeMemory; glibc: malloc_trim). Costs page faults when the memory is
// needed again: call it every few seconds at most.
void ReleaseFreeMemory();

}  // namespace gsau
