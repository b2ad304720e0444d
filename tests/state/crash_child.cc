// state_crash_child DB SEED BATCH [READY_FD]: applies the deterministic stream of stream.h to the store
// at DB in batches of BATCH events, resuming from the stored offset as ingest does, until it
// is killed. Used by crash_test.cc; not a tool.
//
// Each batch k (events [k*BATCH, (k+1)*BATCH)) stores two offsets: clicks/0 = the next event
// index, clicks/1 = k + 1, so the checker can tell a whole batch from part of one. Once the
// store is open and its first batch is committed it writes one byte to READY_FD (when given),
// so the checker can aim its kill at the writing rather than at the start-up, however slow
// (or loaded) the machine.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "gsau/state/state_store.h"
#include "stream.h"

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s DB SEED BATCH [READY_FD]\n", argv[0]);
    return 2;
  }
  gsau::state::StateOptions o;
  o.path = argv[1];
  o.session_length = 8;             // short sessions: deletes on most clicks
  o.write_buffer_bytes = 1 << 20;   // frequent flushes: kills land during them too
  o.block_cache_bytes = 8 << 20;
  const uint64_t seed = std::strtoull(argv[2], nullptr, 10);
  const uint64_t batch = std::strtoull(argv[3], nullptr, 10);
  auto store = gsau::state::StateStore::Open(o);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
  }
  int ready_fd = argc == 5 ? std::atoi(argv[4]) : -1;
  const gsau::TopicPartition tp0{"clicks", 0}, tp1{"clicks", 1};
  for (;;) {
    const uint64_t next = static_cast<uint64_t>((*store)->Offset(tp0).value_or(0));
    const auto events = gsau::state::testing::MakeEvents(seed, next, next + batch,
                                                         gsau::state::testing::StreamShape{2000, 3000});
    const gsau::PartitionOffset offsets[] = {{tp0, static_cast<int64_t>(next + batch)},
                                             {tp1, static_cast<int64_t>(next / batch + 1)}};
    auto r = (*store)->ApplyBatch(events, offsets);
    if (!r.ok()) {
      std::fprintf(stderr, "apply: %s\n", r.status().ToString().c_str());
      return 1;
    }
    if (ready_fd >= 0) {
      if (write(ready_fd, "R", 1) != 1) return 1;
      close(ready_fd);
      ready_fd = -1;
    }
  }
}
