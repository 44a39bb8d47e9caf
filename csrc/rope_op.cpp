// rope_2d / rope_2d_ / rope_2d_freqs_backward: argument checks and parameters, shared by every device.
#include "rope_op.h"

#include "checks.h"

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
  check_same_device(op, "q, k, positions and freqs", {q, k, positions, freqs});
  TORCH_CHECK(q.dim() == 4, op, ": q must be 4-D ",
              layout == kRopeBHND ? "[B, heads, N, head_dim]" : "[B, N, heads, head_dim]", ", got shape ", q.sizes());
  TORCH_CHECK(k.dim() == 4, op, ": k must be 4-D like q ", q.sizes(), ", got shape ", k.sizes());
  const auto dtype = q.scalar_type();
  check_float(op, "dtype", dtype);
  TORCH_CHECK(k.scalar_type() == dtype, op, ": k must have q's dtype ", dtype, ", got ", k.scalar_type());
  const at::Tensor qv = as_bhnd(q, layout);
  RopeParams p;
  p.batch = qv.size(0);
  p.heads = qv.size(1);
  p.tokens = qv.size(2);
  p.head_dim = qv.size(3);
  const at::Tensor kv = as_bhnd(k, layout);
  p.k_heads = kv.size(1);
  TORCH_CHECK(kv.size(0) == p.batch && kv.size(2) == p.tokens && kv.size(3) == p.head_dim && p.k_heads > 0 &&
                  p.heads % p.k_heads == 0,
              op, ": k must have q's shape ", q.sizes(), " or fewer heads dividing q's ", p.heads, ", got ", k.sizes());
  p.pairs = static_cast<int>(pairs);
  TORCH_CHECK(p.head_dim % 2 == 0 && p.head_dim > 0, op, ": head_dim must be even and > 0, got ", p.head_dim);
  TORCH_CHECK(num_prefix_tokens >= 0 && num_prefix_tokens <= p.tokens, op, ": num_prefix_tokens must be in [0, ",
              p.tokens, "], got ", num_prefix_tokens);
  p.num_prefix_tokens = num_prefix_tokens;
  const auto math = opmath_dtype(dtype);
  const int64_t grid = p.tokens - num_prefix_tokens, pd = positions.dim();
  TORCH_CHECK((pd == 2 || (pd == 3 && (positions.size(0) == p.batch || positions.size(0) == 1))) &&
                  positions.size(pd - 2) == grid && positions.size(pd - 1) >= 1 &&
                  positions.size(pd - 1) <= kRopeMaxAxes,
              op, ": positions must be [N - num_prefix_tokens, A] = [", grid, ", 1 to 3 axes] or per batch entry [B (",
              p.batch, "), ", grid, ", A], got ", positions.sizes());
  p.axes = positions.size(pd - 1);
  p.pos_batch = pd == 3 ? positions.size(0) : 1;
  TORCH_CHECK(positions.scalar_type() == math, op, ": positions must be ", math, " for ", dtype, " q/k, got ",
              positions.scalar_type());
  TORCH_CHECK(freqs.dim() == 3 && freqs.size(0) == p.axes && (freqs.size(1) == 1 || freqs.size(1) == p.heads) &&
                  freqs.size(2) >= 1 && freqs.size(2) <= p.head_dim / 2,
              op, ": freqs must be [A (", p.axes, ", the axes of positions), 1 or heads (", p.heads,
              "), 1 to head_dim/2 (", p.head_dim / 2, ") rotated pairs], got ", freqs.sizes());
  TORCH_CHECK(freqs.size(1) == 1 || p.k_heads == p.heads, op, ": per-head freqs need k with q's ", p.heads,
              " heads, got ", p.k_heads);
  p.rotary_pairs = freqs.size(2);
  TORCH_CHECK(freqs.scalar_type() == math, op, ": freqs must be ", math, " for ", dtype, " q/k, got ",
              freqs.scalar_type());
  p.freq_heads = freqs.size(1);
  copy_strides(p.q_stride, qv);
  copy_strides(p.k_stride, kv);
  return p;
}

}  // namespace

RopeCall prepare_rope(const at::Tensor& q, const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                      int64_t num_prefix_tokens, int64_t layout, int64_t pairs, bool inplace) {
  const char* op = inplace ? "posext.rope_2d_" : "posext.rope_2d";
  RopeCall c;
  c.p = make_params(op, q, k, positions, freqs, num_prefix_tokens, layout, pairs);
  if (inplace) {  // writes through a view that aliases itself or the other input would race with its own reads
    TORCH_CHECK(!may_overlap_itself(q) && !may_overlap_itself(k), op,
                ": in place, q and k must not be expanded or self-overlapping views (clone them first)");
    TORCH_CHECK(!may_overlap(q, k), op, ": in place, q and k must not share memory");
    c.out_q = q;
    c.out_k = k;
  } else {
    c.out_q = at::empty(q.sizes(), q.options());
    c.out_k = at::empty(k.sizes(), k.options());
  }
  copy_strides(c.p.oq_stride, as_bhnd(c.out_q, layout));
  copy_strides(c.p.ok_stride, as_bhnd(c.out_k, layout));
  c.positions = positions.contiguous();
  c.freqs = freqs.contiguous();
  c.run = q.numel() > 0;
  return c;
}

RopeCall prepare_rope_freqs_backward(const at::Tensor& grad_q, const at::Tensor& grad_k, const at::Tensor& q,
                                     const at::Tensor& k, const at::Tensor& positions, const at::Tensor& freqs,
                                     int64_t num_prefix_tokens, int64_t layout, int64_t pairs) {
  const char* op = "posext.rope_2d_freqs_backward";
  check_same_device(op, "gradients, q, k, positions and freqs", {q, grad_q, grad_k, k, positions, freqs});
  RopeCall c;
  c.p = make_params(op, q, k, positions, freqs, num_prefix_tokens, layout, pairs);
  TORCH_CHECK(grad_q.sizes() == q.sizes() && grad_k.sizes() == k.sizes(), op, ": gradients must have the shapes of q ",
              q.sizes(), " and k ", k.sizes(), ", got ", grad_q.sizes(), " and ", grad_k.sizes());
  TORCH_CHECK(grad_q.scalar_type() == q.scalar_type() && grad_k.scalar_type() == q.scalar_type(), op,
              ": gradients must have q's dtype ", q.scalar_type());
  copy_strides(c.p.oq_stride, as_bhnd(grad_q, layout));  // the gradients play the outputs' part
  copy_strides(c.p.ok_stride, as_bhnd(grad_k, layout));
  c.positions = positions.contiguous();
  c.freqs = freqs.contiguous();
  c.run = q.numel() > 0 && c.p.tokens > c.p.num_prefix_tokens;
  c.grad_freqs = c.run ? at::empty(freqs.sizes(), freqs.options()) : at::zeros(freqs.sizes(), freqs.options());
  return c;
}

}  // namespace posext
