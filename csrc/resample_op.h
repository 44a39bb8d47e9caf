#pragma once
// resample / resample_backward / resample_add: the checked call (resample_op.cpp) and the per-device kernels.
// Each device's kernel file registers ResampleOps<its kernels> for its dispatch key.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "resample.h"

namespace posext {

// Kernels: `in` and `out` are [B, tokens, C] with unit channel stride. `addend`: undefined for plain resampling,
// else x of resample_add (out has its shape; see ResampleParams::add_batch).
using ResampleForward = void (*)(const at::Tensor& in, at::Tensor& out, const ResampleParams& p,
                                 const at::Tensor& addend);
using ResampleBackward = void (*)(const at::Tensor& grad_out, at::Tensor& grad_in, const ResampleParams& p);

void resample_forward_cpu(const at::Tensor& in, at::Tensor& out, const ResampleParams& p, const at::Tensor& addend);
void resample_backward_cpu(const at::Tensor& grad_out, at::Tensor& grad_in, const ResampleParams& p);
void resample_forward_cuda(const at::Tensor& in, at::Tensor& out, const ResampleParams& p, const at::Tensor& addend);
void resample_backward_cuda(const at::Tensor& grad_out, at::Tensor& grad_in, const ResampleParams& p);

// One call, checked and laid out for a kernel: `in` with unit channel stride, `out` allocated (nothing to
// compute when it is empty), `addend` (resample_add only) and the parameters.
struct ResampleCall {
  at::Tensor in, out, addend;
  ResampleParams p;
};

// `tokens`: [B, P + old_h*old_w, C] (forward) or the gradient [B, P + new_h*new_w, C] (backward).
ResampleCall prepare_resample(const at::Tensor& tokens, bool backward, int64_t old_h, int64_t old_w, int64_t new_h,
                              int64_t new_w, int64_t num_prefix_tokens, int64_t mode, bool antialias,
                              bool align_corners, double scale_h, double scale_w);
ResampleCall prepare_resample_add(const at::Tensor& x, const at::Tensor& pos_embed, int64_t old_h, int64_t old_w,
                                  int64_t new_h, int64_t new_w, int64_t num_prefix_tokens, int64_t mode,
                                  bool antialias, bool align_corners, double scale_h, double scale_w);

// The three ops on one device, given its kernels (the signatures are the schemas of bindings.cpp).
template <ResampleForward Forward, ResampleBackward Backward>
struct ResampleOps {
  static at::Tensor resample(const at::Tensor& tokens, int64_t old_h, int64_t old_w, int64_t new_h, int64_t new_w,
                             int64_t num_prefix_tokens, int64_t mode, bool antialias, bool align_corners,
                             double scale_h, double scale_w) {
    ResampleCall c = prepare_resample(tokens, false, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                                      align_corners, scale_h, scale_w);
    if (c.out.numel() > 0) Forward(c.in, c.out, c.p, at::Tensor());
    return c.out;
  }
  static at::Tensor resample_backward(const at::Tensor& grad_out, int64_t old_h, int64_t old_w, int64_t new_h,
                                      int64_t new_w, int64_t num_prefix_tokens, int64_t mode, bool antialias,
                                      bool align_corners, double scale_h, double scale_w) {
    ResampleCall c = prepare_resample(grad_out, true, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                                      align_corners, scale_h, scale_w);
    if (c.out.numel() > 0) Backward(c.in, c.out, c.p);
    return c.out;
  }
  static at::Tensor resample_add(const at::Tensor& x, const at::Tensor& pos_embed, int64_t old_h, int64_t old_w,
                                 int64_t new_h, int64_t new_w, int64_t num_prefix_tokens, int64_t mode, bool antialias,
                                 bool align_corners, double scale_h, double scale_w) {
    ResampleCall c = prepare_resample_add(x, pos_embed, old_h, old_w, new_h, new_w, num_prefix_tokens, mode,
                                          antialias, align_corners, scale_h, scale_w);
    if (c.out.numel() > 0) Forward(c.in, c.out, c.p, c.addend);
    return c.out;
  }
  static void register_kernels(torch::Library& m) {
    m.impl("resample", &resample);
    m.impl("resample_backward", &resample_backward);
    m.impl("resample_add", &resample_add);
  }
};

}  // namespace posext
