#pragma once
// rope_2d / rope_2d_ / rope_2d_freqs_backward: the checked call (rope_op.cpp) and the per-device kernels.
// Each device's kernel file registers RopeOps<its kernels> for its dispatch key.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "rope.h"

namespace posext {

// Kernels: q, k and the results seen as [B, H, N, D] through the strides in p; positions [N - P, A] (or [B, N - P, A])
// and freqs [A, Hf, D/2] contiguous in opmath dtype. out_q/out_k may be q/k themselves (in place).
using RopeRotate = void (*)(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions,
                            const at::Tensor& freqs, at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p);
using RopeFreqsBackward = void (*)(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                   const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                   at::Tensor& grad_freqs, const RopeParams& p);

void rope_2d_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                 at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p);
void rope_2d_freqs_backward_cpu(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                at::Tensor& grad_freqs, const RopeParams& p);
void rope_2d_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                  at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p);
void rope_2d_freqs_backward_cuda(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                 const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                 at::Tensor& grad_freqs, const RopeParams& p);

// One call, checked and laid out for a kernel. `run` is false when there is nothing to compute.
struct RopeCall {
  at::Tensor positions, freqs, out_q, out_k, grad_freqs;
  RopeParams p;
  bool run = false;
};

RopeCall prepare_rope(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                      int64_t num_prefix_tokens, int64_t layout, int64_t pairs, bool inplace);
RopeCall prepare_rope_freqs_backward(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                     const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                     int64_t num_prefix_tokens, int64_t layout, int64_t pairs);

// The three ops on one device, given its kernels (the signatures are the schemas of bindings.cpp).
template <RopeRotate Rotate, RopeFreqsBackward FreqsBackward>
struct RopeOps {
  static std::tuple<at::Tensor, at::Tensor> rope_2d(const at::Tensor& q, const at::Tensor& k,
                                                    const at::Tensor& positions, const at::Tensor& freqs,
                                                    int64_t num_prefix_tokens, int64_t layout, int64_t pairs) {
    RopeCall c = prepare_rope(q, k, positions, freqs, num_prefix_tokens, layout, pairs, false);
    if (c.run) Rotate(q, k, c.positions, c.freqs, c.out_q, c.out_k, c.p);
    return {c.out_q, c.out_k};
  }
  static void rope_2d_(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                       int64_t num_prefix_tokens, int64_t layout, int64_t pairs) {
    RopeCall c = prepare_rope(q, k, positions, freqs, num_prefix_tokens, layout, pairs, true);
    if (c.run) Rotate(q, k, c.positions, c.freqs, c.out_q, c.out_k, c.p);
  }
  static at::Tensor rope_2d_freqs_backward(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                           const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                           int64_t num_prefix_tokens, int64_t layout, int64_t pairs) {
    RopeCall c = prepare_rope_freqs_backward(grad_q, grad_k, q, k, positions, freqs, num_prefix_tokens, layout, pairs);
    if (c.run) FreqsBackward(grad_q, grad_k, q, k, c.positions, c.freqs, c.grad_freqs, c.p);
    return c.grad_freqs;
  }
  static void register_kernels(torch::Library& m) {
    m.impl("rope_2d", &rope_2d);
    m.impl("rope_2d_", &rope_2d_);
    m.impl("rope_2d_freqs_backward", &rope_2d_freqs_backward);
  }
};

}  // namespace posext
