// CPU 3-D sin-cos tables in one pass over the token rows. Banded layouts: each band's values depend on one
// coordinate only, so they are computed once per (band channel, coordinate) in float64, rounded once to the
// output dtype, and every row is then a few contiguous band copies (memory-bound). The interleaved layout has
// a distinct angle per (token, channel): its rows are computed in place, with the per-channel factors hoisted.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "sincos3d_op.h"

namespace posext {
namespace {

template <typename scalar_t>
void fill_banded(scalar_t* out, const SinCos3dParams& p) {
  const int64_t D = p.embed_dim, H = p.height, W = p.width;
  // values[b]: [length of band b's axis, width_b], row q = coordinate q.
  std::vector<std::vector<scalar_t>> values(p.num_bands);
  for (int b = 0; b < p.num_bands; ++b) {
    const int axis = p.band_axis[b];
    const int64_t len = axis3d_length(p, axis), F = p.band_width[b];
    std::vector<Channel3d> channels(F);
    for (int64_t k = 0; k < F; ++k) channels[k] = channel3d(p, p.band_start[b] + k);
    values[b].resize(len * F);
    scalar_t* v = values[b].data();
    at::parallel_for(0, len, std::max<int64_t>(1, 8192 / F), [&](int64_t begin, int64_t end) {
      for (int64_t q = begin; q < end; ++q) {
        const double pos = position3d(p, axis, q);
        for (int64_t k = 0; k < F; ++k) v[q * F + k] = static_cast<scalar_t>(channel3d_value(channels[k], pos));
      }
    });
  }
  std::fill(out, out + p.num_prefix_tokens * D, scalar_t(0));
  scalar_t* grid = out + p.num_prefix_tokens * D;
  at::parallel_for(0, p.depth * H * W, std::max<int64_t>(1, 32768 / D), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const int64_t coord[3] = {n / (H * W), (n / W) % H, n % W};
      scalar_t* row = grid + n * D;
      for (int b = 0; b < p.num_bands; ++b) {
        const int64_t F = p.band_width[b];
        const scalar_t* src = values[b].data() + coord[p.band_axis[b]] * F;
        std::copy(src, src + F, row + p.band_start[b]);
      }
    }
  });
}

template <typename scalar_t>
void fill_interleaved(scalar_t* out, const SinCos3dParams& p) {
  const int64_t D = p.embed_dim;
  std::vector<Channel3d> channels(D);
  for (int64_t c = 0; c < D; ++c) channels[c] = channel3d(p, c);
  std::fill(out, out + p.num_prefix_tokens * D, scalar_t(0));
  scalar_t* grid = out + p.num_prefix_tokens * D;
  at::parallel_for(0, p.depth * p.height * p.width, std::max<int64_t>(1, 2048 / D), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const double pos = position3d(p, kAxis3dFlat, n);
      scalar_t* row = grid + n * D;
      for (int64_t c = 0; c < D; ++c) row[c] = static_cast<scalar_t>(channel3d_value(channels[c], pos));
    }
  });
}

}  // namespace

void sincos_3d_cpu(at::Tensor& out, const SinCos3dParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "posext_sincos_3d_cpu", [&] {
    if (p.num_bands == 0) {
      fill_interleaved<scalar_t>(out.data_ptr<scalar_t>(), p);
    } else {
      fill_banded<scalar_t>(out.data_ptr<scalar_t>(), p);
    }
  });
}

TORCH_LIBRARY_IMPL(posext, CPU, m) { SinCos3dOps<sincos_3d_cpu>::register_kernels(m); }

}  // namespace posext
