// Internal to the learner: how OpenBLAS's threads live beside torch's.
#pragma once

#include <dlfcn.h>

namespace gsau::learner {

// Torch parallelises its own kernels with OpenMP; what OpenBLAS should do depends on its build.
//  - OpenMP build (scripts/setup.sh selects it): a GEMM runs on the calling thread's OpenMP team,
//    the one torch's kernels use, sized by torch::set_num_threads on that thread; inside a torch
//    parallel region it runs single-threaded. Nothing to do. GSAU (rec) on Toys, torch at 2
//    threads: 137.5 ms per step against 150.5 with the pthread build held to one thread
//    (bench_train, 2026-11-28, same losses to all printed digits).
//  - pthread build (Debian's default libblas.so.3 alternative): it starts a pool of its own, and
//    its threads and torch's both spin while waiting, so on a 2-core machine they fought for the
//    cores (233-259 ms per step at 2 OpenBLAS threads, 142-145 at 1). Held to the calling thread.
// Calling openblas_set_num_threads on the OpenMP build would not do that: it sets the calling
// thread's OpenMP thread count, torch's too. A no-op where the BLAS is not OpenBLAS.
inline void ConfigureBlasThreads() {
  using GetParallel = int (*)();
  using SetThreads = void (*)(int);
  constexpr int kOpenMp = 2;  // openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP
  auto* get_parallel = reinterpret_cast<GetParallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  auto* set_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set_threads == nullptr) return;
  if (get_parallel != nullptr && get_parallel() == kOpenMp) return;
  set_threads(1);
}

}  // namespace gsau::learner
