#pragma once
// The inner loops of the CPU varlen kernels: weighted sums of rows of C values, in opmath T.
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace posext {

// The kernels are built for AVX-512, AVX2 + FMA and the baseline ISA, one picked when the library loads (GCC on
// x86-64 Linux; elsewhere the baseline): the compile flags stay the baseline, so the extension loads anywhere.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define POSEXT_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define POSEXT_INLINE inline __attribute__((always_inline))  // inlined into each clone, so built for its ISA
#else
#define POSEXT_ISA_CLONES
#define POSEXT_INLINE inline
#endif

// acc[0, n) = w * src (first) or += w * src.
template <typename T, typename S>
POSEXT_INLINE void axpy(T* __restrict__ acc, const S* __restrict__ src, T w, int64_t n, bool first) {
  if (first) {
    for (int64_t i = 0; i < n; ++i) acc[i] = w * static_cast<T>(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) acc[i] += w * static_cast<T>(src[i]);
  }
}

// dst[0, n) = sum_k w[k] * src[k][0, n), k in order; no taps: zeros. dst may be one of the sources (a running
// sum: each block is read from every source before it is written). Blocks of channels stay in registers across
// the taps (each source read once, dst written once): GCC vector types where the sources are T, whose width each
// ISA clone splits into its own registers; a plain loop elsewhere.
template <typename T, typename S, typename D>
POSEXT_INLINE void weighted_sum(D* dst, const S* const* src, const T* w, int64_t taps, int64_t n) {
  int64_t i0 = 0;
#if defined(__GNUC__)
  if constexpr (std::is_same<S, T>::value) {
    typedef T V __attribute__((vector_size(64)));
    constexpr int64_t kLanes = 64 / sizeof(T), kBlock = 4 * kLanes;
    for (; i0 + kBlock <= n; i0 += kBlock) {
      V a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int64_t k = 0; k < taps; ++k) {
        const T* s = src[k] + i0;
        const V wk = V{} + w[k];
        V x0, x1, x2, x3;
        std::memcpy(&x0, s, sizeof(V));
        std::memcpy(&x1, s + kLanes, sizeof(V));
        std::memcpy(&x2, s + 2 * kLanes, sizeof(V));
        std::memcpy(&x3, s + 3 * kLanes, sizeof(V));
        a0 += wk * x0;
        a1 += wk * x1;
        a2 += wk * x2;
        a3 += wk * x3;
      }
      const V acc[4] = {a0, a1, a2, a3};
      if constexpr (std::is_same<D, T>::value) {
        std::memcpy(dst + i0, acc, sizeof(acc));
      } else {
        for (int64_t i = 0; i < kBlock; ++i) dst[i0 + i] = static_cast<D>(acc[i / kLanes][i % kLanes]);
      }
    }
  }
#endif
  for (; i0 < n; ++i0) {
    T acc = T(0);
    for (int64_t k = 0; k < taps; ++k) acc += w[k] * static_cast<T>(src[k][i0]);
    dst[i0] = static_cast<D>(acc);
  }
}

// The sources and weights of one weighted_sum, reused across calls (no allocation once grown).
template <typename T, typename S>
struct Taps {
  std::vector<const S*> src;
  std::vector<T> w;
  void clear() {
    src.clear();
    w.clear();
  }
  void push(const S* s, T weight) {
    src.push_back(s);
    w.push_back(weight);
  }
  template <typename D>
  POSEXT_INLINE void sum_into(D* dst, int64_t n) const {
    weighted_sum(dst, src.data(), w.data(), static_cast<int64_t>(src.size()), n);
  }
};

}  // namespace posext
