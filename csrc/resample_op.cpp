// resample / resample_backward / resample_add: argument checks, parameters and registration for CPU and CUDA.
#include <torch/library.h>

#include "ops.h"

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

// `tokens_in`: [B, P + old_h*old_w, C] for forward, [B, P + new_h*new_w, C] (grad) for backward.
ResampleParams make_params(const at::Tensor& tokens_in, bool backward, int64_t old_h, int64_t old_w, int64_t new_h,
                           int64_t new_w, int64_t num_prefix_tokens, int64_t mode, bool antialias, bool align_corners,
                           double scale_h, double scale_w) {
  const char* op = backward ? "posext.resample_backward" : "posext.resample";
  TORCH_CHECK(tokens_in.dim() == 3, op, ": expected a 3-D [B, tokens, C] tensor, got shape ", tokens_in.sizes());
  const auto dtype = tokens_in.scalar_type();
  TORCH_CHECK(dtype == at::kDouble || dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": dtype must be float64, float32, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(old_h > 0 && old_w > 0 && new_h > 0 && new_w > 0, op, ": grid sizes must be positive, got old (",
              old_h, ", ", old_w, ") new (", new_h, ", ", new_w, ")");
  TORCH_CHECK(mode >= kNearest && mode <= kBicubic, op, ": mode must be 0 (nearest), 1 (bilinear) or 2 (bicubic), got ",
              mode);
  TORCH_CHECK(!(mode == kNearest && (antialias || align_corners)), op,
              ": nearest takes neither antialias nor align_corners");
  TORCH_CHECK(num_prefix_tokens >= 0, op, ": num_prefix_tokens must be >= 0, got ", num_prefix_tokens);
  const int64_t grid_tokens = backward ? new_h * new_w : old_h * old_w;
  TORCH_CHECK(tokens_in.size(1) == num_prefix_tokens + grid_tokens, op, ": expected ", num_prefix_tokens, " + ",
              backward ? new_h : old_h, "*", backward ? new_w : old_w, " = ", num_prefix_tokens + grid_tokens,
              " tokens, got ", tokens_in.size(1));
  TORCH_CHECK(std::isfinite(scale_h) && std::isfinite(scale_w), op, ": scale factors must be finite");
  ResampleParams p;
  p.mode = static_cast<int>(mode);
  p.antialias = antialias;
  p.align_corners = align_corners;
  p.batch = tokens_in.size(0);
  p.channels = tokens_in.size(2);
  p.num_prefix_tokens = num_prefix_tokens;
  p.y = make_axis(old_h, new_h, scale_h, p, dtype == at::kDouble);
  p.x = make_axis(old_w, new_w, scale_w, p, dtype == at::kDouble);
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

// Runs the kernel for in's device: forward (optionally fused with `addend`, see resample_forward_cpu) or backward.
void launch(const char* op, bool backward, const at::Tensor& in, at::Tensor& out, const ResampleParams& p,
            const at::Tensor& addend = at::Tensor()) {
  if (in.device().is_cpu()) {
    backward ? resample_backward_cpu(in, out, p) : resample_forward_cpu(in, out, p, addend);
  } else {
#ifdef POSEXT_WITH_CUDA
    TORCH_CHECK(in.device().is_cuda(), op, ": no kernel for device ", in.device());
    backward ? resample_backward_cuda(in, out, p) : resample_forward_cuda(in, out, p, addend);
#else
    TORCH_CHECK(false, op, ": no kernel for device ", in.device());
#endif
  }
}

template <bool kBackward>
at::Tensor run(const at::Tensor& tokens, int64_t old_h, int64_t old_w, int64_t new_h, int64_t new_w,
               int64_t num_prefix_tokens, int64_t mode, bool antialias, bool align_corners, double scale_h,
               double scale_w) {
  ResampleParams p = make_params(tokens, kBackward, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                                 align_corners, scale_h, scale_w);
  const at::Tensor in = unit_channel_stride(tokens);
  const int64_t out_tokens = num_prefix_tokens + (kBackward ? old_h * old_w : new_h * new_w);
  at::Tensor out = at::empty({p.batch, out_tokens, p.channels}, in.options());
  set_strides(p, in, out);
  if (out.numel() > 0) launch("posext.resample", kBackward, in, out, p);
  return out;
}

// x [Bx, P + new_h*new_w, C] + resample(pos_embed [1 or Bx, P + old_h*old_w, C]) in one pass: the resized table
// is never stored; each of its rows is added to every batch entry of x it feeds.
at::Tensor resample_add(const at::Tensor& x_in, const at::Tensor& pos_embed, int64_t old_h, int64_t old_w,
                        int64_t new_h, int64_t new_w, int64_t num_prefix_tokens, int64_t mode, bool antialias,
                        bool align_corners, double scale_h, double scale_w) {
  const char* op = "posext.resample_add";
  ResampleParams p = make_params(pos_embed, false, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                                 align_corners, scale_h, scale_w);
  TORCH_CHECK(x_in.dim() == 3 && x_in.size(1) == num_prefix_tokens + new_h * new_w && x_in.size(2) == p.channels, op,
              ": x must be [B, ", num_prefix_tokens, " + ", new_h, "*", new_w, ", C=", p.channels, "], got ",
              x_in.sizes());
  TORCH_CHECK(x_in.scalar_type() == pos_embed.scalar_type(), op, ": x dtype ", x_in.scalar_type(),
              " differs from pos_embed dtype ", pos_embed.scalar_type());
  TORCH_CHECK(x_in.device() == pos_embed.device(), op, ": x and pos_embed must be on one device, got ",
              x_in.device(), " and ", pos_embed.device());
  TORCH_CHECK(p.batch == 1 || p.batch == x_in.size(0), op, ": pos_embed batch must be 1 or x's batch ",
              x_in.size(0), ", got ", p.batch);
  const at::Tensor in = unit_channel_stride(pos_embed), x = unit_channel_stride(x_in);
  at::Tensor out = at::empty(x.sizes(), x.options());
  set_strides(p, in, out);
  p.add_batch = x.size(0);
  p.add_batch_stride = x.stride(0);
  p.add_token_stride = x.stride(1);
  if (out.numel() > 0) launch(op, false, in, out, p, x);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(posext, CPU, m) {
  m.impl("resample", &run<false>);
  m.impl("resample_backward", &run<true>);
  m.impl("resample_add", &resample_add);
}
#ifdef POSEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(posext, CUDA, m) {
  m.impl("resample", &run<false>);
  m.impl("resample_backward", &run<true>);
  m.impl("resample_add", &resample_add);
}
#endif

}  // namespace posext
