// CPU varlen resampling. Forward: parallel over result rows; each row takes its image's taps (resample.h) and sums
// x first (one tap row at a time), then y, channels innermost, in opmath T. Backward: parallel over table cells;
// each cell gathers, image after image in order, the gradient rows whose taps reach it: deterministic.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "varlen_op.h"

namespace posext {
namespace {

template <typename scalar_t, typename T>
void forward_rows(const VarlenCall& c) {
  const VarlenParams& p = c.p;
  const int64_t C = p.channels, P = p.num_prefix_tokens, W_in = p.old_w;
  const scalar_t* table = c.in.const_data_ptr<scalar_t>();
  const scalar_t* add = p.add ? c.addend.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* out = c.out.data_ptr<scalar_t>();
  const int64_t* sizes = c.grid_sizes.const_data_ptr<int64_t>();
  const int64_t* offsets = is_padded(p) ? nullptr : c.offsets.const_data_ptr<int64_t>();
  const int64_t ky = varlen_taps_bound(p.old_h), kx = varlen_taps_bound(p.old_w);
  at::parallel_for(0, p.rows, 8, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> idx_y(ky), idx_x(kx);
    std::vector<T> w_y(ky), w_x(kx), acc(C), r(C);
    int64_t cached = -1;
    VarlenImage g;
    ResampleAxis ay, ax;
    for (int64_t row = begin; row < end; ++row) {
      int64_t b, local;
      locate_row(p, offsets, row, b, local);
      scalar_t* dst = out + row * C;
      if (b != cached) {
        g = VarlenImage{sizes[3 * b], sizes[3 * b + 1], sizes[3 * b + 2]};
        ay = varlen_axis<T>(p.old_h, g.h, p);
        ax = varlen_axis<T>(p.old_w, g.w, p);
        cached = b;
      }
      if (local >= image_tokens(g)) {  // padding
        for (int64_t ch = 0; ch < C; ++ch) dst[ch] = add ? add[row * C + ch] : scalar_t(0);
        continue;
      }
      int64_t oy, ox;
      row_position(local, g, p.merge, oy, ox);
      const int ny = axis_taps<T>(ay, p.mode, p.antialias, p.align_corners, oy, idx_y.data(), w_y.data());
      const int nx = axis_taps<T>(ax, p.mode, p.antialias, p.align_corners, ox, idx_x.data(), w_x.data());
      for (int j = 0; j < ny; ++j) {
        const scalar_t* src_row = table + (P + idx_y[j] * W_in) * C;
        for (int k = 0; k < nx; ++k) {
          const scalar_t* src = src_row + idx_x[k] * C;
          const T wk = w_x[k];
          if (k == 0) {
            for (int64_t ch = 0; ch < C; ++ch) r[ch] = wk * static_cast<T>(src[ch]);
          } else {
            for (int64_t ch = 0; ch < C; ++ch) r[ch] += wk * static_cast<T>(src[ch]);
          }
        }
        if (nx == 0) std::fill(r.begin(), r.end(), T(0));
        const T wj = w_y[j];
        if (j == 0) {
          for (int64_t ch = 0; ch < C; ++ch) acc[ch] = wj * r[ch];
        } else {
          for (int64_t ch = 0; ch < C; ++ch) acc[ch] += wj * r[ch];
        }
      }
      if (ny == 0) std::fill(acc.begin(), acc.end(), T(0));
      if (add) {
        const scalar_t* x = add + row * C;
        for (int64_t ch = 0; ch < C; ++ch)
          dst[ch] = static_cast<scalar_t>(static_cast<T>(x[ch]) + static_cast<T>(static_cast<scalar_t>(acc[ch])));
      } else {
        for (int64_t ch = 0; ch < C; ++ch) dst[ch] = static_cast<scalar_t>(acc[ch]);
      }
    }
  });
}

template <typename scalar_t, typename T>
void backward_cells(const VarlenCall& c) {
  const VarlenParams& p = c.p;
  const int64_t C = p.channels, P = p.num_prefix_tokens;
  const scalar_t* grad = c.in.const_data_ptr<scalar_t>();
  scalar_t* out = c.out.data_ptr<scalar_t>();
  const int64_t* sizes = c.grid_sizes.const_data_ptr<int64_t>();
  const int64_t* offsets = is_padded(p) ? nullptr : c.offsets.const_data_ptr<int64_t>();
  std::fill(out, out + P * C, scalar_t(0));
  at::parallel_for(0, p.old_h * p.old_w, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(C), r(C), w_x;
    for (int64_t cell = begin; cell < end; ++cell) {
      const int64_t ry = cell / p.old_w, rx = cell - ry * p.old_w;
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t b = 0; b < p.batch; ++b) {
        const VarlenImage g{sizes[3 * b], sizes[3 * b + 1], sizes[3 * b + 2]};
        const ResampleAxis ay = varlen_axis<T>(p.old_h, g.h, p), ax = varlen_axis<T>(p.old_w, g.w, p);
        int64_t lo_y, hi_y, lo_x, hi_x;
        outputs_reaching<T>(ay, p.mode, p.antialias, p.align_corners, ry, lo_y, hi_y);
        outputs_reaching<T>(ax, p.mode, p.antialias, p.align_corners, rx, lo_x, hi_x);
        if (hi_y < lo_y || hi_x < lo_x) continue;
        w_x.resize(hi_x - lo_x + 1);
        for (int64_t ox = lo_x; ox <= hi_x; ++ox)
          w_x[ox - lo_x] = transposed_weight<T>(ax, p.mode, p.antialias, p.align_corners, ox, rx);
        const int64_t base = is_padded(p) ? b * p.max_length : offsets[b], frame = g.h * g.w;
        for (int64_t oy = lo_y; oy <= hi_y; ++oy) {
          const T wy = transposed_weight<T>(ay, p.mode, p.antialias, p.align_corners, oy, ry);
          if (wy == T(0)) continue;
          for (int64_t f = 0; f < g.t; ++f) {
            bool any = false;
            for (int64_t ox = lo_x; ox <= hi_x; ++ox) {
              const T wx = w_x[ox - lo_x];
              if (wx == T(0)) continue;
              const scalar_t* src = grad + (base + f * frame + position_row(oy, ox, g, p.merge)) * C;
              if (!any) {
                for (int64_t ch = 0; ch < C; ++ch) r[ch] = wx * static_cast<T>(src[ch]);
                any = true;
              } else {
                for (int64_t ch = 0; ch < C; ++ch) r[ch] += wx * static_cast<T>(src[ch]);
              }
            }
            if (any)
              for (int64_t ch = 0; ch < C; ++ch) acc[ch] += wy * r[ch];
          }
        }
      }
      scalar_t* dst = out + (P + cell) * C;
      for (int64_t ch = 0; ch < C; ++ch) dst[ch] = static_cast<scalar_t>(acc[ch]);
    }
  });
}

}  // namespace

void varlen_forward_cpu(const VarlenCall& c) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.in.scalar_type(), "posext_varlen_cpu", [&] {
    forward_rows<scalar_t, at::opmath_type<scalar_t>>(c);
  });
}

void varlen_backward_cpu(const VarlenCall& c) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.in.scalar_type(), "posext_varlen_bwd_cpu", [&] {
    backward_cells<scalar_t, at::opmath_type<scalar_t>>(c);
  });
}

TORCH_LIBRARY_IMPL(posext, CPU, m) { VarlenOps<varlen_forward_cpu, varlen_backward_cpu>::register_kernels(m); }

}  // namespace posext
