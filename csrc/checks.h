#pragma once
// Argument checks shared by the ops: sizes are multiplied and added only through these, which refuse (with
// the op's name) instead of wrapping around, so no kernel ever sees a size that overflowed.
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <utility>
#include <vector>

namespace posext {

inline int64_t checked_mul(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r = 0;
  TORCH_CHECK(a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, &r), op, ": ", what, " (", a, " * ", b,
              ") is negative or overflows int64");
  return r;
}

inline int64_t checked_add(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r = 0;
  TORCH_CHECK(a >= 0 && b >= 0 && !__builtin_add_overflow(a, b, &r), op, ": ", what, " (", a, " + ", b,
              ") is negative or overflows int64");
  return r;
}

// Elements of a tensor of `sizes`, refusing products that overflow (at::empty would wrap them).
inline int64_t checked_numel(at::IntArrayRef sizes, const char* op) {
  int64_t n = 1;
  for (const int64_t s : sizes) n = checked_mul(n, s, op, "the result's element count");
  return n;
}

inline bool is_float(at::ScalarType t) {
  return t == at::kDouble || t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

inline void check_float(const char* op, const char* what, at::ScalarType t) {
  TORCH_CHECK(is_float(t), op, ": ", what, " must be float64, float32, float16 or bfloat16, got ", t);
}

// All `tensors` on the device of the first one (named in `what`, e.g. "x, positions and tables").
inline void check_same_device(const char* op, const char* what, std::initializer_list<at::Tensor> tensors) {
  const at::Device device = tensors.begin()->device();
  for (const at::Tensor& t : tensors)
    TORCH_CHECK(!t.defined() || t.device() == device, op, ": ", what, " must be on one device, got ", device,
                " and ", t.device());
}

// True when two elements of `t` may share memory (an expanded or self-overlapping view): sorted by stride, every
// dimension of size > 1 must step past all that the smaller-stride dimensions span.
inline bool may_overlap_itself(const at::Tensor& t) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size)
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.size(d) > 1) dims.emplace_back(t.stride(d), t.size(d));
  std::sort(dims.begin(), dims.end());
  int64_t span = 0;
  for (const auto& [stride, size] : dims) {
    if (stride <= span) return true;
    span += stride * (size - 1);
  }
  return false;
}

// True when an element of `a` and one of `b` may be the same memory: one storage, intersecting element ranges,
// and, for views of one shape and strides (q and k sliced from one qkv tensor), an offset difference that is
// sum_d c_d * stride_d with |c_d| < size_d. Strides that each step past the span of the smaller ones (checked by
// may_overlap_itself) leave at most two digits per dimension, so the search below is exact and short. Views of
// different strides are assumed to overlap.
inline bool may_overlap(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0 || !a.storage().is_alias_of(b.storage())) return false;
  const auto last = [](const at::Tensor& t) {
    int64_t end = t.storage_offset();
    for (int64_t d = 0; d < t.dim(); ++d) end += t.stride(d) * (t.size(d) - 1);
    return end;
  };
  const int64_t a0 = a.storage_offset() * a.element_size(), a1 = (last(a) + 1) * a.element_size();
  const int64_t b0 = b.storage_offset() * b.element_size(), b1 = (last(b) + 1) * b.element_size();
  if (a1 <= b0 || b1 <= a0) return false;
  if (a.element_size() != b.element_size() || a.sizes() != b.sizes() || a.strides() != b.strides() ||
      may_overlap_itself(a))
    return true;
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size), largest stride first
  for (int64_t d = 0; d < a.dim(); ++d)
    if (a.size(d) > 1) dims.emplace_back(a.stride(d), a.size(d));
  std::sort(dims.rbegin(), dims.rend());
  std::vector<int64_t> span_below(dims.size() + 1, 0);  // the most the dimensions after i can add
  for (size_t i = dims.size(); i-- > 0;) span_below[i] = span_below[i + 1] + dims[i].first * (dims[i].second - 1);
  const std::function<bool(int64_t, size_t)> reach = [&](int64_t delta, size_t i) {
    if (i == dims.size()) return delta == 0;
    const auto [stride, size] = dims[i];
    const int64_t lo = std::max<int64_t>(-(size - 1), -((span_below[i + 1] - delta) / stride) - 1);
    const int64_t hi = std::min<int64_t>(size - 1, (delta + span_below[i + 1]) / stride + 1);
    for (int64_t c = lo; c <= hi; ++c)
      if (std::abs(delta - c * stride) <= span_below[i + 1] && reach(delta - c * stride, i + 1)) return true;
    return false;
  };
  return reach(std::abs(b.storage_offset() - a.storage_offset()), 0);
}

}  // namespace posext
