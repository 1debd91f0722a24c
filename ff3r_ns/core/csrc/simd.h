// Vector helpers of the CPU rasterizer (rasterize_cpu.cpp): a vectorisable exp, lane and row masks,
// compile-time channel widths and fixed-order sums, so that results do not depend on how a loop is
// split between threads.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "common.h"

namespace ff3r {

constexpr int kLanes = kTile;  // one tile row = one vector of lanes
constexpr int kV = 8;          // channel block: pixel state and packed colours are padded to a multiple

inline int64_t padded(int64_t d) { return (d + kV - 1) / kV * kV; }

// --------------------------------------------------------------------------- exp
// exp(-s) for s >= 0. float: Cephes' expf polynomial (relative error ~1e-7), plain arithmetic so that
// the 16-lane loops calling it vectorise; double: std::exp.
template <typename scalar_t>
inline scalar_t exp_neg(scalar_t s);

template <>
inline float exp_neg<float>(float s) {
  const float x = std::max(-s, -87.0f);
  const int32_t ni = static_cast<int32_t>(x * 1.44269504088896341f - 0.5f);  // round(x / ln 2), x <= 0
  const float n = static_cast<float>(ni);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * z + r + 1.0f;
  const int32_t bits = (ni + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

template <>
inline double exp_neg<double>(double s) {
  return std::exp(-s);
}


// Bit x set where flags[x] != 0 (one compare where the CPU has 512- or 256-bit integer vectors; a
// plain loop of 16 would cost more than the channel work of a small Gaussian's row).
inline uint32_t lane_bits(const int32_t* flags) {
#if defined(__AVX512F__)
  const __m512i v = _mm512_loadu_si512(reinterpret_cast<const void*>(flags));
  return static_cast<uint32_t>(_mm512_test_epi32_mask(v, v));
#elif defined(__AVX2__)
  const __m256i zero = _mm256_setzero_si256();
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(flags));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(flags + 8));
  const uint32_t off_lo = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(lo, zero))));
  const uint32_t off_hi = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(hi, zero))));
  return ~(off_lo | (off_hi << 8)) & 0xFFFFu;
#else
  uint32_t bits = 0;
  for (int x = 0; x < kLanes; ++x) bits |= static_cast<uint32_t>(flags[x] != 0) << x;
  return bits;
#endif
}

// Sum of 16 lanes as a fixed tree (vectorises; the same order everywhere).
template <typename scalar_t>
inline scalar_t sum16(const scalar_t* v) {
  scalar_t h[8];
  for (int i = 0; i < 8; ++i) h[i] = v[i] + v[i + 8];
  for (int i = 0; i < 4; ++i) h[i] += h[i + 4];
  return (h[0] + h[2]) + (h[1] + h[3]);
}

// dot(x, y) over dp (a multiple of kV) entries, as kV partial sums and a fixed tree.
template <typename scalar_t>
inline scalar_t dot_padded(const scalar_t* x, const scalar_t* y, int64_t dp) {
  scalar_t s[kV] = {};
  for (int64_t k = 0; k < dp; k += kV)
#pragma omp simd
    for (int i = 0; i < kV; ++i) s[i] += x[k + i] * y[k + i];
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

// y[0:dp] += f * x[0:dp]
template <typename scalar_t>
inline void axpy_padded(scalar_t f, const scalar_t* x, scalar_t* y, int64_t dp) {
  for (int64_t k = 0; k < dp; k += kV)
#pragma omp simd
    for (int i = 0; i < kV; ++i) y[k + i] += f * x[k + i];
}

// Prefetch of the cache line holding p. On x86 as inline asm: GCC 12 dropped __builtin_prefetch in
// these loops (measured: no prefetch instruction in the library; with them the compositing of the
// demo scene took 0.65x the time on one thread).
inline void prefetch_line(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}

template <typename scalar_t>
inline void prefetch_entry(const scalar_t* packed, int64_t stride, const int64_t* ids, int64_t j, int64_t hi) {
  if (j < 0 || j >= hi) return;
  const char* p = reinterpret_cast<const char*>(packed + ids[j] * stride);
  for (int64_t b = 0; b < stride * static_cast<int64_t>(sizeof(scalar_t)); b += 64) prefetch_line(p + b);
}

// The rows of a bit mask, in increasing order; returns how many.
inline int mask_rows(uint32_t mask, int32_t* rows) {
  int n = 0;
  for (; mask; mask &= mask - 1) rows[n++] = __builtin_ctz(mask);
  return n;
}

// fn(std::integral_constant<int, Dp>) for the common padded widths Dp (8: RGB + depth, 16 and 24: with 8 or
// 16 features), so that the per-pixel channel loops are unrolled; fn(integral_constant<int, 0>) otherwise.
template <typename Fn>
void with_width(int64_t dp, const Fn& fn) {
  switch (dp) {
    case 8: return fn(std::integral_constant<int, 8>{});
    case 16: return fn(std::integral_constant<int, 16>{});
    case 24: return fn(std::integral_constant<int, 24>{});
    default: return fn(std::integral_constant<int, 0>{});
  }
}

}  // namespace ff3r
