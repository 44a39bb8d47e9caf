// resample / resample_backward / resample_add: argument checks and parameters, shared by every device.
#include "resample_op.h"

#include <algorithm>
#include <cmath>

#include "checks.h"

namespace posext {
namespace {

ResampleAxis make_axis(int64_t in_size, int64_t out_size, double user_scale, const ResampleParams& p, bool is_double) {
  ResampleAxis a;
  a.in_size = in_size;
  a.out_size = out_size;
  a.user_scale = user_scale;
  a.identity = axis_is_identity(a, p.mode, p.antialias, p.align_corners);
  a.max_taps = is_double ? axis_max_taps<double>(a, p.mode, p.antialias, p.align_corners)
                         : axis_max_taps<float>(a, p.mode, p.antialias, p.align_corners);
  return a;
}

// A user scale (scale_factor) must be the one that maps old to new as F.interpolate does: new = floor(old * s).
void check_scale(const char* op, const char* name, double scale, int64_t old_size, int64_t new_size) {
  TORCH_CHECK(std::isfinite(scale), op, ": ", name, " must be finite, got ", scale);
  if (scale <= 0) return;  // the size was given
  TORCH_CHECK(std::floor(static_cast<double>(old_size) * scale) == static_cast<double>(new_size), op, ": ", name,
              " ", scale, " does not map ", old_size, " to ", new_size, " (F.interpolate's size is floor(",
              old_size, " * ", scale, "))");
}

// `tokens_in`: [B, P + old_h*old_w, C] for forward, [B, P + new_h*new_w, C] (grad) for backward.
ResampleParams make_params(const char* op, const at::Tensor& tokens_in, bool backward, int64_t old_h, int64_t old_w,
                           int64_t new_h, int64_t new_w, int64_t num_prefix_tokens, int64_t mode, bool antialias,
                           bool align_corners, double scale_h, double scale_w) {
  TORCH_CHECK(tokens_in.dim() == 3, op, ": expected a 3-D [B, tokens, C] tensor, got shape ", tokens_in.sizes());
  check_float(op, "dtype", tokens_in.scalar_type());
  TORCH_CHECK(old_h > 0 && old_w > 0 && new_h > 0 && new_w > 0, op, ": grid sizes must be positive, got old (",
              old_h, ", ", old_w, ") new (", new_h, ", ", new_w, ")");
  TORCH_CHECK(mode >= kNearest && mode <= kBicubic, op, ": mode must be 0 (nearest), 1 (bilinear) or 2 (bicubic), got ",
              mode);
  TORCH_CHECK(!(mode == kNearest && (antialias || align_corners)), op,
              ": nearest takes neither antialias nor align_corners");
  TORCH_CHECK(num_prefix_tokens >= 0, op, ": num_prefix_tokens must be >= 0, got ", num_prefix_tokens);
  const int64_t old_grid = checked_mul(old_h, old_w, op, "old_h * old_w");
  const int64_t new_grid = checked_mul(new_h, new_w, op, "new_h * new_w");
  checked_add(num_prefix_tokens, std::max(old_grid, new_grid), op, "num_prefix_tokens + grid tokens");
  const int64_t grid_tokens = backward ? new_grid : old_grid;
  TORCH_CHECK(tokens_in.size(1) == num_prefix_tokens + grid_tokens, op, ": expected ", num_prefix_tokens, " + ",
              backward ? new_h : old_h, "*", backward ? new_w : old_w, " = ", num_prefix_tokens + grid_tokens,
              " tokens, got ", tokens_in.size(1));
  check_scale(op, "scale_h", scale_h, old_h, new_h);
  check_scale(op, "scale_w", scale_w, old_w, new_w);
  ResampleParams p;
  p.mode = static_cast<int>(mode);
  p.antialias = antialias;
  p.align_corners = align_corners;
  p.batch = tokens_in.size(0);
  p.channels = tokens_in.size(2);
  p.num_prefix_tokens = num_prefix_tokens;
  const bool is_double = tokens_in.scalar_type() == at::kDouble;
  p.y = make_axis(old_h, new_h, scale_h, p, is_double);
  p.x = make_axis(old_w, new_w, scale_w, p, is_double);
  return p;
}

// Kernels read channels with unit stride; batch and token strides may be anything.
at::Tensor unit_channel_stride(const at::Tensor& t) { return t.size(2) <= 1 || t.stride(2) == 1 ? t : t.contiguous(); }

void set_strides(ResampleParams& p, const at::Tensor& in, const at::Tensor& out) {
  p.in_batch_stride = in.stride(0);
  p.in_token_stride = in.stride(1);
  p.out_batch_stride = out.stride(0);
  p.out_token_stride = out.stride(1);
}

}  // namespace

ResampleCall prepare_resample(const at::Tensor& tokens, bool backward, int64_t old_h, int64_t old_w, int64_t new_h,
                              int64_t new_w, int64_t num_prefix_tokens, int64_t mode, bool antialias,
                              bool align_corners, double scale_h, double scale_w) {
  const char* op = backward ? "posext.resample_backward" : "posext.resample";
  ResampleCall c;
  c.p = make_params(op, tokens, backward, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                    align_corners, scale_h, scale_w);
  c.in = unit_channel_stride(tokens);
  const int64_t out_tokens = num_prefix_tokens + (backward ? old_h * old_w : new_h * new_w);
  const std::vector<int64_t> sizes{c.p.batch, out_tokens, c.p.channels};
  checked_numel(sizes, op);
  c.out = at::empty(sizes, c.in.options());
  set_strides(c.p, c.in, c.out);
  return c;
}

// x [Bx, P + new_h*new_w, C] + resample(pos_embed [1 or Bx, P + old_h*old_w, C], ...) in one pass: the resized table
// is never stored; each of its rows is added to every batch entry of x it feeds.
ResampleCall prepare_resample_add(const at::Tensor& x, const at::Tensor& pos_embed, int64_t old_h, int64_t old_w,
                                  int64_t new_h, int64_t new_w, int64_t num_prefix_tokens, int64_t mode,
                                  bool antialias, bool align_corners, double scale_h, double scale_w) {
  const char* op = "posext.resample_add";
  check_same_device(op, "x and pos_embed", {x, pos_embed});
  ResampleCall c;
  c.p = make_params(op, pos_embed, false, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                    align_corners, scale_h, scale_w);
  TORCH_CHECK(x.dim() == 3 && x.size(1) == num_prefix_tokens + new_h * new_w && x.size(2) == c.p.channels, op,
              ": x must be [B, ", num_prefix_tokens, " + ", new_h, "*", new_w, ", C=", c.p.channels, "], got ",
              x.sizes());
  TORCH_CHECK(x.scalar_type() == pos_embed.scalar_type(), op, ": x dtype ", x.scalar_type(),
              " differs from pos_embed dtype ", pos_embed.scalar_type());
  TORCH_CHECK(c.p.batch == 1 || c.p.batch == x.size(0), op, ": pos_embed batch must be 1 or x's batch ", x.size(0),
              ", got ", c.p.batch);
  c.in = unit_channel_stride(pos_embed);
  c.addend = unit_channel_stride(x);
  c.out = at::empty(c.addend.sizes(), c.addend.options());
  set_strides(c.p, c.in, c.out);
  c.p.add_batch = c.addend.size(0);
  c.p.add_batch_stride = c.addend.stride(0);
  c.p.add_token_stride = c.addend.stride(1);
  return c;
}

}  // namespace posext
