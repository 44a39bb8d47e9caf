#pragma once
// Host entry points of every posext kernel. Each op: argument checks + params here, kernels in cpu/ and cuda/.
#include <ATen/ATen.h>

#include "factorized.h"
#include "resample.h"
#include "rope.h"
#include "sincos.h"

namespace posext {

// Builds and checks the table parameters; `bands` holds one code per band: axis * 2 + is_cos.
SinCosParams sincos_params(int64_t embed_dim, int64_t num_bands, at::IntArrayRef bands,
                           double temperature, int64_t freq_denominator_offset);

void sincos_2d_cpu(at::Tensor& out, const SinCosParams& p);
void sincos_1d_cpu(at::Tensor& out, const at::Tensor& positions, const SinCosParams& p);
#ifdef POSEXT_WITH_CUDA
void sincos_2d_cuda(at::Tensor& out, const SinCosParams& p);
void sincos_1d_cuda(at::Tensor& out, const at::Tensor& positions, const SinCosParams& p);
#endif

// Resample kernels: input/grad_out/output tensors are [B, tokens, C] with unit channel stride.
// `addend`: undefined for plain resampling, else x of resample_add (out has its shape; see ResampleParams).
void resample_forward_cpu(const at::Tensor& input, at::Tensor& out, const ResampleParams& p,
                          const at::Tensor& addend = at::Tensor());
void resample_backward_cpu(const at::Tensor& grad_out, at::Tensor& grad_in, const ResampleParams& p);
#ifdef POSEXT_WITH_CUDA
void resample_forward_cuda(const at::Tensor& input, at::Tensor& out, const ResampleParams& p,
                           const at::Tensor& addend = at::Tensor());
void resample_backward_cuda(const at::Tensor& grad_out, at::Tensor& grad_in, const ResampleParams& p);
#endif

// 2D RoPE kernels: q/k and results seen as [B, H, N, D] through the strides in p; positions [N - P, 2] and
// freqs [2, Hf, D/2] contiguous in opmath dtype. out_q/out_k may alias q/k (in place).
void rope_2d_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                 at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p);
void rope_2d_freqs_backward_cpu(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                at::Tensor& grad_freqs, const RopeParams& p);
#ifdef POSEXT_WITH_CUDA
void rope_2d_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                  at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p);
void rope_2d_freqs_backward_cuda(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                 const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                 at::Tensor& grad_freqs, const RopeParams& p);
#endif

// Factorized positions: x/out [B, S, C] with unit channel stride, tables contiguous; segment tensors int64/opmath.
void factorized_add_cpu(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                        const at::Tensor& table_x, at::Tensor& out, const FactorizedParams& p);
void factorized_table_grad_cpu(const at::Tensor& grad, const at::Tensor& offsets, const at::Tensor& tokens,
                               const at::Tensor& weights, int64_t channel_offset, at::Tensor& out);
#ifdef POSEXT_WITH_CUDA
void factorized_add_cuda(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                         const at::Tensor& table_x, at::Tensor& out, const FactorizedParams& p);
void factorized_table_grad_cuda(const at::Tensor& grad, const at::Tensor& offsets, const at::Tensor& tokens,
                                const at::Tensor& weights, int64_t channel_offset, at::Tensor& out);
#endif

}  // namespace posext
