// Shared by the CPU renderer's sources (ff3r_ns/core/render_cpu.py compiles them into one library).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

#define FF3R_EXPORT extern "C" __attribute__((visibility("default")))

namespace ff3r {

constexpr int kTile = 16;  // tile side in pixels (gsplat's default)

// Index of the calling thread in the current parallel region (0 without OpenMP).
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// fn(i) for i in [0, n) over n_threads OpenMP threads, handed out one at a time.
template <typename Fn>
void parallel_dynamic(int64_t n, int n_threads, const Fn& fn) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads) if (n > 1 && n_threads > 1)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

// fn(i) for i in [0, n), in contiguous blocks.
template <typename Fn>
void parallel_static(int64_t n, int n_threads, const Fn& fn) {
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n > 4096 && n_threads > 1)
  for (int64_t i = 0; i < n; ++i) fn(i);
}

// floor of a double clamped to [lo, hi] (no undefined conversion of huge or NaN values).
inline int64_t floor_in(double v, int64_t lo, int64_t hi) {
  v = std::floor(v);
  return !(v > static_cast<double>(lo)) ? lo : v >= static_cast<double>(hi) ? hi : static_cast<int64_t>(v);
}

}  // namespace ff3r
