#pragma once
// resample_varlen / resample_varlen_backward / resample_varlen_add: the checked call (varlen_op.cpp) and the
// per-device kernels. Each device's kernel file registers VarlenOps<its kernels> for its dispatch key.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "varlen.h"

namespace posext {

// One call, checked and laid out for a kernel; every tensor contiguous. Forward: `in` the table
// [P + old_h*old_w, C], `out` the rows ([rows, C] packed, [B, max_length, C] padded), `addend` x of the fused
// add (else undefined). Backward: `in` the gradient of those rows, `out` the table's gradient.
// `grid_sizes` [B, 3] and `offsets` [B + 1] int64 on the tensors' device (offsets unused when padded).
struct VarlenCall {
  at::Tensor in, out, addend, grid_sizes, offsets;
  VarlenParams p;
};

using VarlenKernel = void (*)(const VarlenCall& c);

void varlen_forward_cpu(const VarlenCall& c);
void varlen_backward_cpu(const VarlenCall& c);
void varlen_forward_cuda(const VarlenCall& c);
void varlen_backward_cuda(const VarlenCall& c);

VarlenCall prepare_varlen(const at::Tensor& table, const at::Tensor& grid_sizes, const at::Tensor& offsets,
                          int64_t old_h, int64_t old_w, int64_t num_prefix_tokens, int64_t mode, bool antialias,
                          bool align_corners, int64_t merge_size, int64_t total_tokens, int64_t max_length);
VarlenCall prepare_varlen_backward(const at::Tensor& grad, const at::Tensor& grid_sizes, const at::Tensor& offsets,
                                   int64_t old_h, int64_t old_w, int64_t num_prefix_tokens, int64_t mode,
                                   bool antialias, bool align_corners, int64_t merge_size, int64_t max_length);
VarlenCall prepare_varlen_add(const at::Tensor& x, const at::Tensor& table, const at::Tensor& grid_sizes,
                              const at::Tensor& offsets, int64_t old_h, int64_t old_w, int64_t num_prefix_tokens,
                              int64_t mode, bool antialias, bool align_corners, int64_t merge_size,
                              int64_t max_length);

// The three ops on one device, given its kernels (the signatures are the schemas of bindings.cpp, SymInt sizes
// taken as int64_t: a kernel runs on concrete sizes).
template <VarlenKernel Forward, VarlenKernel Backward>
struct VarlenOps {
  static at::Tensor resample_varlen(const at::Tensor& table, const at::Tensor& grid_sizes, const at::Tensor& offsets,
                                    int64_t old_h, int64_t old_w, int64_t num_prefix_tokens, int64_t mode,
                                    bool antialias, bool align_corners, int64_t merge_size, int64_t total_tokens,
                                    int64_t max_length) {
    const VarlenCall c = prepare_varlen(table, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode, antialias,
                                        align_corners, merge_size, total_tokens, max_length);
    if (c.out.numel() > 0) Forward(c);
    return c.out;
  }
  static at::Tensor resample_varlen_backward(const at::Tensor& grad, const at::Tensor& grid_sizes,
                                             const at::Tensor& offsets, int64_t old_h, int64_t old_w,
                                             int64_t num_prefix_tokens, int64_t mode, bool antialias,
                                             bool align_corners, int64_t merge_size, int64_t max_length) {
    const VarlenCall c = prepare_varlen_backward(grad, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode,
                                                 antialias, align_corners, merge_size, max_length);
    if (c.out.numel() > 0) Backward(c);
    return c.out;
  }
  static at::Tensor resample_varlen_add(const at::Tensor& x, const at::Tensor& table, const at::Tensor& grid_sizes,
                                        const at::Tensor& offsets, int64_t old_h, int64_t old_w,
                                        int64_t num_prefix_tokens, int64_t mode, bool antialias, bool align_corners,
                                        int64_t merge_size, int64_t max_length) {
    const VarlenCall c = prepare_varlen_add(x, table, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode,
                                            antialias, align_corners, merge_size, max_length);
    if (c.out.numel() > 0) Forward(c);
    return c.out;
  }
  static void register_kernels(torch::Library& m) {
    m.impl("resample_varlen", &resample_varlen);
    m.impl("resample_varlen_backward", &resample_varlen_backward);
    m.impl("resample_varlen_add", &resample_varlen_add);
  }
};

}  // namespace posext
