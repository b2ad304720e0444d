// Internal to the learner: how many threads OpenBLAS may start.
#pragma once

#include <dlfcn.h>

namespace gsau::learner {

// Debian's libblas.so.3 may be OpenBLAS's pthread build, which starts a pool of its own beside
// torch's OpenMP threads. Both spin while waiting, so on a 2-core machine a GEMM's helper threads
// and torch's fought for the cores: GSAU (rec) on Toys, torch at 2 threads, ran 233-259 ms per
// step with OpenBLAS at 2 threads and 142-145 ms with it at 1 (bench_train, 2026-11-28). Torch's
// own threads parallelise everything else; GEMMs run on the calling thread. A no-op where the
// BLAS is not OpenBLAS.
inline void UseSingleThreadedBlas() {
  using SetThreads = void (*)(int);
  if (auto* f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(1);
}

}  // namespace gsau::learner
