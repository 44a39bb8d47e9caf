// CPU sin-cos tables. The float64 angles (header formula) go through ATen's vectorised sin/cos once per
// (axis position, frequency) and are rounded once to the output dtype; a 2D table is then a pure
// memory-bound fill: every token row is four contiguous band copies.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "sincos_op.h"

namespace posext {
namespace {

// angles[i][k] = angle_of(pos_i, omega_k) for the given positions, float64 [positions.size(0), F].
at::Tensor angle_table(const at::Tensor& positions, const SinCosParams& p) {
  const int64_t F = p.band_width, M = positions.size(0);
  at::Tensor angles = at::empty({M, F}, at::dtype(at::kDouble));
  const at::Tensor pos = positions.to(at::kDouble).contiguous();
  const double* pos_ptr = pos.const_data_ptr<double>();
  double* a = angles.data_ptr<double>();
  std::vector<double> omega(F);
  for (int64_t k = 0; k < F; ++k) omega[k] = freq_omega(p, k);
  at::parallel_for(0, M, std::max<int64_t>(1, 8192 / F), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      for (int64_t k = 0; k < F; ++k) a[i * F + k] = angle_of(pos_ptr[i], omega[k]);
  });
  return angles;
}

template <typename scalar_t>
void fill_2d(scalar_t* out, const scalar_t* sin_table, const scalar_t* cos_table, const SinCosParams& p) {
  const int64_t D = p.embed_dim, F = p.band_width, W = p.width;
  std::fill(out, out + p.num_prefix_tokens * D, scalar_t(0));
  scalar_t* grid = out + p.num_prefix_tokens * D;
  // Table rows: x positions 0..W-1, then y positions W..W+H-1.
  const int64_t grain = std::max<int64_t>(1, 32768 / D);
  at::parallel_for(0, p.height * W, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t y = t / W, x = t - y * W;
      scalar_t* row = grid + t * D;
      for (int b = 0; b < p.num_bands; ++b) {
        const scalar_t* table = band_is_cos(p, b) ? cos_table : sin_table;
        const scalar_t* src = table + (band_along_x(p, b) ? x : W + y) * F;
        std::copy(src, src + F, row + b * F);
      }
    }
  });
}

}  // namespace

void sincos_2d_cpu(at::Tensor& out, const SinCosParams& p) {
  const at::Tensor positions = at::cat({at::arange(p.width, at::kDouble), at::arange(p.height, at::kDouble)});
  const at::Tensor angles = angle_table(positions, p);
  const at::Tensor sin_table = angles.sin().to(out.scalar_type());
  const at::Tensor cos_table = angles.cos().to(out.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "posext_sincos_2d_cpu", [&] {
    fill_2d<scalar_t>(out.data_ptr<scalar_t>(), sin_table.const_data_ptr<scalar_t>(),
                      cos_table.const_data_ptr<scalar_t>(), p);
  });
}

void sincos_1d_cpu(at::Tensor& out, const at::Tensor& positions, const SinCosParams& p) {
  const at::Tensor angles = angle_table(positions, p);
  out.narrow(1, 0, p.band_width).copy_(angles.sin());
  out.narrow(1, p.band_width, p.band_width).copy_(angles.cos());
}

TORCH_LIBRARY_IMPL(posext, CPU, m) { SinCosOps<sincos_2d_cpu, sincos_1d_cpu>::register_kernels(m); }

}  // namespace posext
