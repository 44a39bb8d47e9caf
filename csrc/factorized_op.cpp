// factorized_add / factorized_table_grads: argument checks, parameters and the host-built per-row token lists,
// shared by every device.
#include "factorized_op.h"

#include <vector>

#include "checks.h"

namespace posext {
namespace {

// Checks x (or its gradient) [B, S, C], positions and tables; fills the parameters. `x` gets unit channel stride.
FactorizedParams make_params(const char* op, at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                             const std::optional<at::Tensor>& table_x_opt, int64_t combine) {
  check_same_device(op, "x, positions and tables",
                    {x, positions, table_y, table_x_opt.has_value() ? *table_x_opt : at::Tensor()});
  TORCH_CHECK(x.dim() == 3, op, ": x must be [B, S, C], got ", x.sizes());
  check_float(op, "x", x.scalar_type());
  TORCH_CHECK(combine >= kSum && combine <= kTable2d, op, ": combine must be 0, 1 or 2, got ", combine);
  TORCH_CHECK(positions.dim() == 2 && positions.size(0) == x.size(1) && positions.size(1) == 2, op,
              ": positions must be [S, 2] with S = ", x.size(1), ", got ", positions.sizes());
  const auto opmath = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(positions.scalar_type() == opmath, op, ": positions must be ", opmath, ", got ",
              positions.scalar_type());
  TORCH_CHECK(table_y.scalar_type() == x.scalar_type(), op, ": table_y dtype ", table_y.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  if (x.size(2) > 1 && x.stride(2) != 1) x = x.contiguous();
  FactorizedParams p;
  p.combine = static_cast<int>(combine);
  p.batch = x.size(0);
  p.tokens = x.size(1);
  p.channels = x.size(2);
  p.x_batch_stride = x.stride(0);
  p.x_token_stride = x.stride(1);
  if (combine == kTable2d) {
    TORCH_CHECK(!table_x_opt.has_value() && table_y.dim() == 3 && table_y.size(2) == p.channels, op,
                ": a 2-D table must be [Ly, Lx, C=", p.channels, "] with no table_x, got ", table_y.sizes());
    p.len_y = table_y.size(0);
    p.len_x = table_y.size(1);
    p.channels_y = p.channels;
  } else {
    TORCH_CHECK(table_x_opt.has_value(), op, ": table_x is required for combine ", combine);
    const at::Tensor& tx = *table_x_opt;
    TORCH_CHECK(table_y.dim() == 2 && tx.dim() == 2, op, ": tables must be [L, C], got ", table_y.sizes(), " and ",
                tx.sizes());
    TORCH_CHECK(tx.scalar_type() == x.scalar_type(), op, ": table_x dtype ", tx.scalar_type(),
                " differs from x dtype ", x.scalar_type());
    p.len_y = table_y.size(0);
    p.len_x = tx.size(0);
    p.channels_y = table_y.size(1);
    p.channels_x = tx.size(1);
    TORCH_CHECK(combine == kSum ? (p.channels_y == p.channels && p.channels_x == p.channels)
                                : (p.channels_y + p.channels_x == p.channels),
                op, ": table widths ", p.channels_y, " and ", p.channels_x, " do not fit C=", p.channels,
                combine == kSum ? " (sum: both must equal C)" : " (concat: they must add up to C)");
  }
  TORCH_CHECK(p.len_y > 0 && p.len_x > 0, op, ": tables must have rows");
  checked_mul(p.len_y, p.len_x, op, "table rows Ly * Lx");
  return p;
}

enum TableAxis : int { kAxisY = 0, kAxisX = 1, kAxisBoth = 2 };

// The entries (token s, weight) that read row r of one table: tokens[offsets[r] .. offsets[r + 1]) in token
// order (a counting sort over the taps of factorized.h: deterministic). Built on the host from positions ([S, 2],
// a few KB); taps of zero weight (the second row of an integer position) are left out; prefix tokens read none.
struct RowLists {
  at::Tensor offsets, tokens, weights;
};

template <typename T>
RowLists row_lists(const at::Tensor& positions_cpu, const FactorizedParams& p, int axis) {
  const T* pos = positions_cpu.const_data_ptr<T>();
  const int64_t S = positions_cpu.size(0);
  const int64_t rows = axis == kAxisBoth ? p.len_y * p.len_x : (axis == kAxisY ? p.len_y : p.len_x);
  const auto taps = [&](int64_t s, int64_t* r, T* w) {
    const T px = pos[2 * s], py = pos[2 * s + 1];
    int n = 0;
    if (py < T(0) || px < T(0)) return n;
    if (axis == kAxisBoth) {
      const LerpTaps<T> ly = lerp_taps<T>(py, p.len_y), lx = lerp_taps<T>(px, p.len_x);
      const int64_t ry[2] = {ly.i0, ly.i1}, rx[2] = {lx.i0, lx.i1};
      const T wy[2] = {ly.w0, ly.w1}, wx[2] = {lx.w0, lx.w1};
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b)
          if (wy[a] * wx[b] != T(0)) {
            r[n] = ry[a] * p.len_x + rx[b];
            w[n++] = wy[a] * wx[b];
          }
    } else {
      const LerpTaps<T> l = axis == kAxisY ? lerp_taps<T>(py, p.len_y) : lerp_taps<T>(px, p.len_x);
      if (l.w0 != T(0)) r[n] = l.i0, w[n++] = l.w0;
      if (l.w1 != T(0)) r[n] = l.i1, w[n++] = l.w1;
    }
    return n;
  };
  const auto long_cpu = at::TensorOptions().dtype(at::kLong);
  at::Tensor offsets = at::zeros({rows + 1}, long_cpu);
  int64_t* off = offsets.data_ptr<int64_t>();
  int64_t r[4];
  T w[4];
  for (int64_t s = 0; s < S; ++s)
    for (int e = 0, n = taps(s, r, w); e < n; ++e) ++off[r[e] + 1];
  for (int64_t i = 0; i < rows; ++i) off[i + 1] += off[i];
  at::Tensor tokens = at::empty({off[rows]}, long_cpu);
  at::Tensor weights = at::empty({off[rows]}, positions_cpu.options());
  std::vector<int64_t> fill(off, off + rows);
  int64_t* tok = tokens.data_ptr<int64_t>();
  T* wt = weights.data_ptr<T>();
  for (int64_t s = 0; s < S; ++s)
    for (int e = 0, n = taps(s, r, w); e < n; ++e) {
      tok[fill[r[e]]] = s;
      wt[fill[r[e]]++] = w[e];
    }
  return {offsets, tokens, weights};
}

// out[r, c] = sum over row r's entries e of weight[e] * sum_b grad[b, token[e], channel_offset + c].
at::Tensor gather_table_grad(FactorizedTableGrad kernel, const at::Tensor& grad, const RowLists& lists,
                             int64_t channel_offset, int64_t channels) {
  at::Tensor out = at::empty({lists.offsets.size(0) - 1, channels}, grad.options());
  if (out.numel() == 0) return out;
  const auto dev = grad.device();
  kernel(grad, lists.offsets.to(dev), lists.tokens.to(dev), lists.weights.to(dev), channel_offset, out);
  return out;
}

}  // namespace

FactorizedCall prepare_factorized_add(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                                      const std::optional<at::Tensor>& table_x, int64_t combine) {
  FactorizedCall c;
  c.x = x;
  c.p = make_params("posext.factorized_add", c.x, positions, table_y, table_x, combine);
  c.table_y = table_y.contiguous();
  c.table_x = table_x.has_value() ? table_x->contiguous() : at::Tensor();
  c.positions = positions.contiguous();
  c.out = at::empty({c.p.batch, c.p.tokens, c.p.channels}, c.x.options());
  return c;
}

std::tuple<at::Tensor, at::Tensor> factorized_table_grads_with(FactorizedTableGrad kernel, const at::Tensor& grad_in,
                                                               const at::Tensor& positions, const at::Tensor& table_y,
                                                               const std::optional<at::Tensor>& table_x_opt,
                                                               int64_t combine, bool need_y, bool need_x) {
  at::Tensor grad = grad_in;
  const FactorizedParams p =
      make_params("posext.factorized_table_grads", grad, positions, table_y, table_x_opt, combine);
  const at::Tensor pos = positions.to(at::kCPU).contiguous();
  at::Tensor grad_y = at::empty({0}, grad.options()), grad_x = at::empty({0}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "posext_factorized_row_lists", [&] {
    if (combine == kTable2d) {
      if (need_y)
        grad_y = gather_table_grad(kernel, grad, row_lists<scalar_t>(pos, p, kAxisBoth), 0, p.channels)
                     .view(table_y.sizes());
      return;
    }
    if (need_y) grad_y = gather_table_grad(kernel, grad, row_lists<scalar_t>(pos, p, kAxisY), 0, p.channels_y);
    if (need_x)
      grad_x = gather_table_grad(kernel, grad, row_lists<scalar_t>(pos, p, kAxisX),
                                 combine == kSum ? 0 : p.channels_y, p.channels_x);
  });
  return {grad_y, grad_x};
}

}  // namespace posext
