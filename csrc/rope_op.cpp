// rope_2d / rope_2d_ / rope_2d_freqs_backward: argument checks, parameters and registration for CPU and CUDA.
#include <torch/library.h>

#include "ops.h"

namespace posext {
namespace {

at::ScalarType opmath_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// [B, H, N, D] view of a q/k-shaped tensor given in `layout`.
at::Tensor as_bhnd(const at::Tensor& t, int64_t layout) { return layout == kRopeBNHD ? t.transpose(1, 2) : t; }

void copy_strides(int64_t* dst, const at::Tensor& bhnd) {
  for (int i = 0; i < 4; ++i) dst[i] = bhnd.stride(i);
}

// Checks q, k, positions and freqs; `q`, `k` are in the caller's layout. Returns [B, H, N, D] sizes in p.
RopeParams make_params(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions,
                       const at::Tensor& freqs, int64_t num_prefix_tokens, int64_t layout, int64_t pairs) {
  TORCH_CHECK(layout == kRopeBHND || layout == kRopeBNHD, op, ": layout must be 0 (bhnd) or 1 (bnhd), got ", layout);
  TORCH_CHECK(pairs == kRopeInterleaved || pairs == kRopeHalf, op,
              ": pair layout must be 0 (interleaved) or 1 (half), got ", pairs);
  TORCH_CHECK(q.dim() == 4, op, ": q must be 4-D ",
              layout == kRopeBHND ? "[B, heads, N, head_dim]" : "[B, N, heads, head_dim]", ", got shape ", q.sizes());
  TORCH_CHECK(k.sizes() == q.sizes(), op, ": k must have q's shape ", q.sizes(), ", got ", k.sizes());
  const auto dtype = q.scalar_type();
  TORCH_CHECK(dtype == at::kDouble || dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": dtype must be float64, float32, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(k.scalar_type() == dtype, op, ": k must have q's dtype ", dtype, ", got ", k.scalar_type());
  TORCH_CHECK(k.device() == q.device() && positions.device() == q.device() && freqs.device() == q.device(), op,
              ": q, k, positions and freqs must be on one device, got ", q.device(), ", ", k.device(), ", ",
              positions.device(), ", ", freqs.device());
  const at::Tensor qv = as_bhnd(q, layout);
  RopeParams p;
  p.batch = qv.size(0);
  p.heads = qv.size(1);
  p.tokens = qv.size(2);
  p.head_dim = qv.size(3);
  p.pairs = static_cast<int>(pairs);
  TORCH_CHECK(p.head_dim % 2 == 0 && p.head_dim > 0, op, ": head_dim must be even and > 0, got ", p.head_dim);
  TORCH_CHECK(num_prefix_tokens >= 0 && num_prefix_tokens <= p.tokens, op, ": num_prefix_tokens must be in [0, ",
              p.tokens, "], got ", num_prefix_tokens);
  p.num_prefix_tokens = num_prefix_tokens;
  const auto math = opmath_dtype(dtype);
  TORCH_CHECK(positions.dim() == 2 && positions.size(0) == p.tokens - num_prefix_tokens && positions.size(1) == 2, op,
              ": positions must be [N - num_prefix_tokens, 2] = [", p.tokens - num_prefix_tokens, ", 2] (x, y), got ",
              positions.sizes());
  TORCH_CHECK(positions.scalar_type() == math, op, ": positions must be ", math, " for ", dtype, " q/k, got ",
              positions.scalar_type());
  TORCH_CHECK(freqs.dim() == 3 && freqs.size(0) == 2 && (freqs.size(1) == 1 || freqs.size(1) == p.heads) &&
                  freqs.size(2) == p.head_dim / 2,
              op, ": freqs must be [2, 1 or heads (", p.heads, "), head_dim/2 (", p.head_dim / 2, ")], got ",
              freqs.sizes());
  TORCH_CHECK(freqs.scalar_type() == math, op, ": freqs must be ", math, " for ", dtype, " q/k, got ",
              freqs.scalar_type());
  p.freq_heads = freqs.size(1);
  copy_strides(p.q_stride, qv);
  copy_strides(p.k_stride, as_bhnd(k, layout));
  return p;
}

void forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& pos, const at::Tensor& freqs,
             at::Tensor& out_q, at::Tensor& out_k, const RopeParams& p) {
  if (q.numel() == 0) return;
  if (q.device().is_cpu()) {
    rope_2d_cpu(q, k, pos, freqs, out_q, out_k, p);
  } else {
#ifdef POSEXT_WITH_CUDA
    TORCH_CHECK(q.device().is_cuda(), "posext.rope_2d: no kernel for device ", q.device());
    rope_2d_cuda(q, k, pos, freqs, out_q, out_k, p);
#else
    TORCH_CHECK(false, "posext.rope_2d: no kernel for device ", q.device());
#endif
  }
}

std::tuple<at::Tensor, at::Tensor> rope_2d(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions,
                                           const at::Tensor& freqs, int64_t num_prefix_tokens, int64_t layout,
                                           int64_t pairs) {
  RopeParams p = make_params("posext.rope_2d", q, k, positions, freqs, num_prefix_tokens, layout, pairs);
  at::Tensor out_q = at::empty(q.sizes(), q.options());
  at::Tensor out_k = at::empty(k.sizes(), k.options());
  copy_strides(p.oq_stride, as_bhnd(out_q, layout));
  copy_strides(p.ok_stride, as_bhnd(out_k, layout));
  forward(q, k, positions.contiguous(), freqs.contiguous(), out_q, out_k, p);
  return {out_q, out_k};
}

void rope_2d_inplace(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                     int64_t num_prefix_tokens, int64_t layout, int64_t pairs) {
  RopeParams p = make_params("posext.rope_2d_", q, k, positions, freqs, num_prefix_tokens, layout, pairs);
  TORCH_CHECK(q.numel() == 0 || q.data_ptr() != k.data_ptr(),
              "posext.rope_2d_: in place, q and k must not share memory");
  copy_strides(p.oq_stride, as_bhnd(q, layout));
  copy_strides(p.ok_stride, as_bhnd(k, layout));
  at::Tensor out_q = q, out_k = k;
  forward(q, k, positions.contiguous(), freqs.contiguous(), out_q, out_k, p);
}

at::Tensor rope_2d_freqs_backward(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                  const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                  int64_t num_prefix_tokens, int64_t layout, int64_t pairs) {
  const char* op = "posext.rope_2d_freqs_backward";
  RopeParams p = make_params(op, q, k, positions, freqs, num_prefix_tokens, layout, pairs);
  TORCH_CHECK(grad_q.sizes() == q.sizes() && grad_k.sizes() == q.sizes(), op, ": gradients must have q's shape ",
              q.sizes(), ", got ", grad_q.sizes(), " and ", grad_k.sizes());
  TORCH_CHECK(grad_q.scalar_type() == q.scalar_type() && grad_k.scalar_type() == q.scalar_type(), op,
              ": gradients must have q's dtype ", q.scalar_type());
  TORCH_CHECK(grad_q.device() == q.device() && grad_k.device() == q.device(), op,
              ": gradients must be on q's device ", q.device());
  copy_strides(p.oq_stride, as_bhnd(grad_q, layout));  // the gradients play the outputs' part
  copy_strides(p.ok_stride, as_bhnd(grad_k, layout));
  at::Tensor grad_freqs = at::empty(freqs.sizes(), freqs.options());
  const at::Tensor pos = positions.contiguous(), f = freqs.contiguous();
  if (q.numel() == 0 || p.tokens == p.num_prefix_tokens) return grad_freqs.zero_();
  if (q.device().is_cpu()) {
    rope_2d_freqs_backward_cpu(grad_q, grad_k, q, k, pos, f, grad_freqs, p);
  } else {
#ifdef POSEXT_WITH_CUDA
    TORCH_CHECK(q.device().is_cuda(), op, ": no kernel for device ", q.device());
    rope_2d_freqs_backward_cuda(grad_q, grad_k, q, k, pos, f, grad_freqs, p);
#else
    TORCH_CHECK(false, op, ": no kernel for device ", q.device());
#endif
  }
  return grad_freqs;
}

}  // namespace

TORCH_LIBRARY_IMPL(posext, CPU, m) {
  m.impl("rope_2d", &rope_2d);
  m.impl("rope_2d_", &rope_2d_inplace);
  m.impl("rope_2d_freqs_backward", &rope_2d_freqs_backward);
}
#ifdef POSEXT_WITH_CUDA
TORCH_LIBRARY_IMPL(posext, CUDA, m) {
  m.impl("rope_2d", &rope_2d);
  m.impl("rope_2d_", &rope_2d_inplace);
  m.impl("rope_2d_freqs_backward", &rope_2d_freqs_backward);
}
#endif

}  // namespace posext
