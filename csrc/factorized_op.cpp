// factorized_add / factorized_table_grad: argument checks, parameters and registration for CPU and CUDA.
#include <torch/library.h>

#include "ops.h"

namespace posext {
namespace {

void check_float(const char* what, const at::Tensor& t) {
  const auto d = t.scalar_type();
  TORCH_CHECK(d == at::kDouble || d == at::kFloat || d == at::kHalf || d == at::kBFloat16, "posext.factorized: ", what,
              " must be float64, float32, float16 or bfloat16, got ", d);
}

at::Tensor factorized_add(const at::Tensor& x_in, const at::Tensor& positions, const at::Tensor& table_y,
                          const std::optional<at::Tensor>& table_x_opt, int64_t combine) {
  TORCH_CHECK(x_in.dim() == 3, "posext.factorized_add: x must be [B, S, C], got ", x_in.sizes());
  check_float("x", x_in);
  TORCH_CHECK(combine >= kSum && combine <= kTable2d, "posext.factorized_add: combine must be 0, 1 or 2, got ", combine);
  TORCH_CHECK(positions.dim() == 2 && positions.size(0) == x_in.size(1) && positions.size(1) == 2,
              "posext.factorized_add: positions must be [S, 2] with S = ", x_in.size(1), ", got ", positions.sizes());
  const auto opmath = x_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(positions.scalar_type() == opmath, "posext.factorized_add: positions must be ", opmath, ", got ",
              positions.scalar_type());
  TORCH_CHECK(table_y.scalar_type() == x_in.scalar_type(), "posext.factorized_add: table_y dtype ",
              table_y.scalar_type(), " differs from x dtype ", x_in.scalar_type());
  const at::Tensor x = x_in.size(2) <= 1 || x_in.stride(2) == 1 ? x_in : x_in.contiguous();
  FactorizedParams p;
  p.combine = static_cast<int>(combine);
  p.batch = x.size(0);
  p.tokens = x.size(1);
  p.channels = x.size(2);
  p.x_batch_stride = x.stride(0);
  p.x_token_stride = x.stride(1);
  at::Tensor ty = table_y.contiguous(), tx;
  if (combine == kTable2d) {
    TORCH_CHECK(!table_x_opt.has_value() && table_y.dim() == 3 && table_y.size(2) == p.channels,
                "posext.factorized_add: a 2-D table must be [Ly, Lx, C=", p.channels, "] with no table_x, got ",
                table_y.sizes());
    p.len_y = table_y.size(0);
    p.len_x = table_y.size(1);
    p.channels_y = p.channels;
  } else {
    TORCH_CHECK(table_x_opt.has_value(), "posext.factorized_add: table_x is required for combine ", combine);
    tx = table_x_opt->contiguous();
    TORCH_CHECK(table_y.dim() == 2 && tx.dim() == 2, "posext.factorized_add: tables must be [L, C], got ",
                table_y.sizes(), " and ", tx.sizes());
    TORCH_CHECK(tx.scalar_type() == x.scalar_type(), "posext.factorized_add: table_x dtype ", tx.scalar_type(),
                " differs from x dtype ", x.scalar_type());
    p.len_y = table_y.size(0);
    p.len_x = tx.size(0);
    p.channels_y = table_y.size(1);
    p.channels_x = tx.size(1);
    TORCH_CHECK(combine == kSum ? (p.channels_y == p.channels && p.channels_x == p.channels)
                                : (p.channels_y + p.channels_x == p.channels),
                "posext.factorized_add: table widths ", p.channels_y, " and ", p.channels_x, " do not fit C=",
                p.channels, combine == kSum ? " (sum: both must equal C)" : " (concat: they must add up to C)");
  }
  TORCH_CHECK(p.len_y > 0 && p.len_x > 0, "posext.factorized_add: tables must have rows");
  TORCH_CHECK(positions.device() == x.device() && table_y.device() == x.device() &&
                  (!tx.defined() || tx.device() == x.device()),
              "posext.factorized_add: x, positions and tables must be on one device");
  at::Tensor out = at::empty({p.batch, p.tokens, p.channels}, x.options());
  if (out.numel() == 0) return out;
  const at::Tensor pos = positions.contiguous();
  if (x.device().is_cpu()) {
    factorized_add_cpu(x, pos, ty, tx, out, p);
  } else {
#ifdef POSEXT_WITH_CUDA
    TORCH_CHECK(x.device().is_cuda(), "posext.factorized_add: no kernel for device ", x.device());
    factorized_add_cuda(x, pos, ty, tx, out, p);
#else
    TORCH_CHECK(false, "posext.factorized_add: no kernel for device ", x.device());
#endif
  }
  return out;
}

at::Tensor factorized_table_grad(const at::Tensor& grad_in, const at::Tensor& offsets, const at::Tensor& tokens,
                                 const at::Tensor& weights, int64_t channel_offset, int64_t channels) {
  TORCH_CHECK(grad_in.dim() == 3, "posext.factorized_table_grad: grad must be [B, S, C], got ", grad_in.sizes());
  check_float("grad", grad_in);
  TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) >= 1 && offsets.scalar_type() == at::kLong,
              "posext.factorized_table_grad: offsets must be int64 [R + 1]");
  TORCH_CHECK(tokens.dim() == 1 && tokens.scalar_type() == at::kLong && weights.dim() == 1 &&
                  weights.size(0) == tokens.size(0),
              "posext.factorized_table_grad: tokens (int64) and weights must be 1-D of equal length");
  TORCH_CHECK(channel_offset >= 0 && channels >= 0 && channel_offset + channels <= grad_in.size(2),
              "posext.factorized_table_grad: channels [", channel_offset, ", ", channel_offset + channels,
              ") outside C=", grad_in.size(2));
  const at::Tensor grad = grad_in.size(2) <= 1 || grad_in.stride(2) == 1 ? grad_in : grad_in.contiguous();
  at::Tensor out = at::empty({offsets.size(0) - 1, channels}, grad.options());
  if (out.numel() == 0) return out;
  const auto opmath = grad.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor off = offsets.contiguous(), tok = tokens.contiguous(), w = weights.to(opmath).contiguous();
  if (grad.device().is_cpu()) {
    // tokens index grad's S axis: checked here once, the kernels trust them.
    if (tok.numel() > 0)
      TORCH_CHECK(tok.min().item<int64_t>() >= 0 && tok.max().item<int64_t>() < grad.size(1),
                  "posext.factorized_table_grad: token index out of range");
    factorized_table_grad_cpu(grad, off, tok, w, channel_offset, out);
  } else {
#ifdef POSEXT_WITH_CUDA
    factorized_table_grad_cuda(grad, off, tok, w, channel_offset, out);
#else
    TORCH_CHECK(false, "posext.factorized_table_grad: no kernel for device ", grad.device());
#endif
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(posext, CPU, m) {
  m.impl("factorized_add", &factorized_add);
  m.impl("factorized_table_grad", &factorized_table_grad);
}
#ifdef POSEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(posext, CUDA, m) {
  m.impl("factorized_add", &factorized_add);
  m.impl("factorized_table_grad", &factorized_table_grad);
}
#endif

}  // namespace posext
