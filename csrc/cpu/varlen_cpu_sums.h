#pragma once
// The inner loops of the CPU varlen kernels: weighted sums of rows of C values, in opmath T.
#include <c10/util/BFloat16.h>

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

// The sources of a weighted sum, as functors whose calls inline into each ISA clone (a lambda's body would be
// compiled once, for the baseline ISA): rows listed by pointer, or rows base + (idx[k] - first) * stride.
template <typename S>
struct ListedRows {
  const S* const* rows;
  POSEXT_INLINE const S* operator()(int64_t k) const { return rows[k]; }
};

template <typename S>
struct StridedRows {
  const S* base;
  const int64_t* idx;
  int64_t first, stride;
  POSEXT_INLINE const S* operator()(int64_t k) const { return base + (idx[k] - first) * stride; }
};

// dst[at, at + lanes) = the lanes of a, converted to D.
template <typename D, typename V>
POSEXT_INLINE void put_lanes(D* dst, int64_t at, const V& a) {
  constexpr int64_t kLanes = sizeof(V) / sizeof(a[0]);
  if constexpr (std::is_same<D, std::remove_cv_t<std::remove_reference_t<decltype(a[0])>>>::value) {
    std::memcpy(dst + at, &a, sizeof(V));
  } else if constexpr (std::is_same<D, c10::BFloat16>::value && sizeof(a[0]) == 4) {
    // c10's float -> bfloat16 rounding (nearest even, NaN -> 0x7FC0) on whole vectors; the element-wise
    // conversion does not vectorise.
    static_assert(sizeof(V) == 64, "weighted_sum's vectors");
    typedef uint32_t U __attribute__((vector_size(64)));
    typedef uint16_t H __attribute__((vector_size(32)));
    U bits;
    std::memcpy(&bits, &a, sizeof(V));
    U rounded = (bits + ((bits >> 16) & 1u) + 0x7FFFu) >> 16;
    rounded = (a != a) ? U{} + 0x7FC0u : rounded;
    const H half = __builtin_convertvector(rounded, H);
    static_assert(sizeof(c10::BFloat16) == 2, "bfloat16 is its 16 bits");
    std::memcpy(dst + at, &half, sizeof(H));
  } else {
    for (int64_t i = 0; i < kLanes; ++i) dst[at + i] = static_cast<D>(a[i]);
  }
}

// dst[0, n) = sum_k w[k] * source(k)[0, n), k in order; no taps: zeros. dst may be one of the sources (a running
// sum: each block is read from every source before it is written). Blocks of channels stay in registers across
// the taps (each source read once, dst written once): GCC vector types where the sources are T, whose width each
// ISA clone splits into its own registers; a plain loop elsewhere.
template <typename T, typename S, typename D, typename Source>
POSEXT_INLINE void weighted_sum(D* dst, const Source& source, const T* w, int64_t taps, int64_t n) {
  int64_t i0 = 0;
#if defined(__GNUC__)
  if constexpr (std::is_same<S, T>::value) {
    typedef T V __attribute__((vector_size(64)));
    constexpr int64_t kLanes = 64 / sizeof(T), kBlock = 4 * kLanes;
    for (; i0 + kBlock <= n; i0 += kBlock) {
      V a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int64_t k = 0; k < taps; ++k) {
        const T* s = source(k) + i0;
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
      put_lanes(dst, i0, a0);
      put_lanes(dst, i0 + kLanes, a1);
      put_lanes(dst, i0 + 2 * kLanes, a2);
      put_lanes(dst, i0 + 3 * kLanes, a3);
    }
  }
#endif
  for (; i0 < n; ++i0) {
    T acc = T(0);
    for (int64_t k = 0; k < taps; ++k) acc += w[k] * static_cast<T>(source(k)[i0]);
    dst[i0] = static_cast<D>(acc);
  }
}

// The weighted sum of the rows base + (idx[k] - first) * stride: one axis's taps, read in place from its table.
template <typename T, typename S, typename D>
POSEXT_INLINE void gather_sum(D* dst, const S* base, const int64_t* idx, const T* w, int64_t taps, int64_t first,
                              int64_t stride, int64_t n) {
  weighted_sum<T, S>(dst, StridedRows<S>{base, idx, first, stride}, w, taps, n);
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
  POSEXT_INLINE void push(const S* s, T weight) {
    src.push_back(s);
    w.push_back(weight);
  }
  template <typename D>
  POSEXT_INLINE void sum_into(D* dst, int64_t n) const {
    weighted_sum<T, S>(dst, ListedRows<S>{src.data()}, w.data(), static_cast<int64_t>(src.size()), n);
  }
};

}  // namespace posext
