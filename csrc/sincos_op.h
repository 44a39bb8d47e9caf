#pragma once
// sincos_2d / sincos_1d (and their out= forms): the checked calls (sincos_op.cpp) and the per-device kernels.
// Each device's kernel file registers SinCosOps<its kernels> for its dispatch key; sincos_2d itself has no
// tensor argument to dispatch on, so sincos_op.cpp makes its result and calls sincos_2d_out.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "checks.h"
#include "sincos.h"

namespace posext {

// Kernels: out contiguous [P + H*W, D] (2D) or [M, D] (1D, positions 1-D of any real dtype on out's device).
using SinCos2d = void (*)(at::Tensor& out, const SinCosParams& p);
using SinCos1d = void (*)(at::Tensor& out, const at::Tensor& positions, const SinCosParams& p);

void sincos_2d_cpu(at::Tensor& out, const SinCosParams& p);
void sincos_1d_cpu(at::Tensor& out, const at::Tensor& positions, const SinCosParams& p);
void sincos_2d_cuda(at::Tensor& out, const SinCosParams& p);
void sincos_1d_cuda(at::Tensor& out, const at::Tensor& positions, const SinCosParams& p);

// Builds and checks the table parameters; `bands` holds one code per band: axis * 2 + is_cos.
SinCosParams sincos_params(int64_t embed_dim, int64_t num_bands, at::IntArrayRef bands, double temperature,
                           int64_t freq_denominator_offset);
SinCosParams sincos_2d_params(int64_t embed_dim, int64_t height, int64_t width, int64_t num_prefix_tokens,
                              double temperature, at::IntArrayRef bands, int64_t freq_denominator_offset);
// Checks `out` (dtype, shape, contiguity) and, for 1D, the positions.
void check_sincos_2d_out(const at::Tensor& out, const SinCosParams& p);
SinCosParams sincos_1d_params(const at::Tensor& positions, int64_t embed_dim, double temperature);
void check_sincos_1d_out(const at::Tensor& out, const at::Tensor& positions, int64_t embed_dim);

// The three tensor-dispatched ops on one device, given its kernels (the signatures are the schemas of
// bindings.cpp).
template <SinCos2d Fill2d, SinCos1d Fill1d>
struct SinCosOps {
  static void sincos_2d_out(int64_t embed_dim, int64_t height, int64_t width, int64_t num_prefix_tokens,
                            double temperature, at::IntArrayRef bands, int64_t freq_denominator_offset,
                            const at::Tensor& out) {
    const SinCosParams p = sincos_2d_params(embed_dim, height, width, num_prefix_tokens, temperature, bands,
                                            freq_denominator_offset);
    check_sincos_2d_out(out, p);
    at::Tensor result = out;
    if (result.numel() > 0) Fill2d(result, p);
  }
  static at::Tensor sincos_1d(const at::Tensor& positions, int64_t embed_dim, double temperature,
                              at::ScalarType dtype) {
    const SinCosParams p = sincos_1d_params(positions, embed_dim, temperature);
    check_float("posext.sincos_1d", "dtype", dtype);
    at::Tensor out = at::empty({positions.size(0), embed_dim}, positions.options().dtype(dtype));
    if (out.numel() > 0) Fill1d(out, positions, p);
    return out;
  }
  static void sincos_1d_out(const at::Tensor& positions, int64_t embed_dim, double temperature,
                            const at::Tensor& out) {
    const SinCosParams p = sincos_1d_params(positions, embed_dim, temperature);
    check_sincos_1d_out(out, positions, embed_dim);
    at::Tensor result = out;
    if (result.numel() > 0) Fill1d(result, positions, p);
  }
  static void register_kernels(torch::Library& m) {
    m.impl("sincos_2d_out", &sincos_2d_out);
    m.impl("sincos_1d", &sincos_1d);
    m.impl("sincos_1d_out", &sincos_1d_out);
  }
};

}  // namespace posext
