// jemalloc's start-up options, compiled into the executables that link jemalloc
// (CMakeLists.txt, gsau_use_allocator); the MALLOC_CONF environment variable still overrides them.
//
// Decay-based purging is off: a training step frees and takes back hundreds of MiB of
// temporaries, and with jemalloc's default decay (10 s) those pages were returned and faulted
// in again, ~100x the page faults of kept pages and 20-25% slower steps (bench_online, Beauty:
// 14.7M minor faults over 60 steps against 0.16M). The unused pages go back to the OS in one
// purge every 10 s instead (MemoryReleaser, which gsau's main runs for every command), which
// keeps resident memory flat; without it nothing hands freed pages back.
extern "C" {
// NOLINTNEXTLINE: the name and type are jemalloc's interface.
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1";
}
