#pragma once
// Rotary position embedding over A = 1, 2 or 3 position axes (RoPE-ViT axial / mixed, M-RoPE sections): the
// formula shared by the CPU and CUDA kernels.
//
// A head vector of D channels holds R/2 rotated pairs in its first R <= D channels (partial RoPE: the other D - R
// channels pass unchanged). Pair p of a grid token at positions (t_0 .. t_{A-1}) turns
//   angle = sum_a t_a * f[a, h, p], summed in axis order   (freqs [A, Hf, R/2]; Hf = 1 or heads)
// (2-D: t_0 = x, t_1 = y; M-RoPE sections put each pair's frequency on one axis row and zeros on the others)
// as the complex multiply (a + i b) * e^(i angle):  a' = a cos - b sin,  b' = a sin + b cos.
// Axial RoPE is the special case fx = [w, 0], fy = [0, w] (w_k = theta^(-k/(D/4)), k in [0, D/4)): adding t*0
// leaves the angle exact. Pair layouts: interleaved (a, b) = channels (2p, 2p+1) (RoPE-ViT, timm `rot`);
// half (a, b) = channels (p, p + R/2) (GPT-NeoX `rotate_half`). The first P tokens are copied unrotated. k may have
// fewer heads than q (grouped-query attention; then Hf = 1).
// Backward: the same rotation by -angle (negated freqs) for q/k, and for the frequencies
//   dL/dangle = g_b * a' - g_a * b'  (a', b' the rotated output; here recomputed from the input),
//   dL/df[a] = sum over (b, h, n) of dL/dangle * t_a, summed in a fixed order.
#include <cmath>
#include <cstdint>

#include "macros.h"

namespace posext {

enum RopeLayout : int { kRopeBHND = 0, kRopeBNHD = 1 };
enum RopePairs : int { kRopeInterleaved = 0, kRopeHalf = 1 };
constexpr int64_t kRopeMaxAxes = 3;

struct RopeParams {
  int64_t batch = 0, heads = 0, tokens = 0, head_dim = 0;  // sizes of q seen as [B, H, N, D]
  int64_t k_heads = 0;                                     // heads of k: heads, or a divisor of it
  int64_t rotary_pairs = 0;                                // R/2 <= D/2 rotated pairs
  int64_t num_prefix_tokens = 0;
  int64_t freq_heads = 1;  // Hf: 1 (shared by all heads) or heads
  int64_t axes = 2;        // A: position axes, 1 to kRopeMaxAxes
  int64_t pos_batch = 1;   // positions [N - P, A] shared by the batch (1), or [B, N - P, A] per entry (batch)
  int pairs = kRopeInterleaved;
  // Element strides of q, k and of the two results, in [B, H, N, D] order (any layout).
  int64_t q_stride[4] = {0, 0, 0, 0}, k_stride[4] = {0, 0, 0, 0};
  int64_t oq_stride[4] = {0, 0, 0, 0}, ok_stride[4] = {0, 0, 0, 0};
};

// Channel offsets (in units of the D stride) of pair p of the rotary_pairs rotated ones.
POSEXT_HD void rope_pair_channels(int pairs, int64_t rotary_pairs, int64_t p, int64_t& c0, int64_t& c1) {
  if (pairs == kRopeHalf) {
    c0 = p;
    c1 = p + rotary_pairs;
  } else {
    c0 = 2 * p;
    c1 = 2 * p + 1;
  }
}

// Index of f[axis, hf, pair] in freqs [A, Hf, D/2] (contiguous).
POSEXT_HD int64_t rope_freq_index(const RopeParams& p, int64_t axis, int64_t hf, int64_t pair) {
  return (axis * p.freq_heads + hf) * p.rotary_pairs + pair;
}

// Positions of grid token g of batch entry b: pos is [N - P, A] or [B, N - P, A] contiguous.
template <typename T>
POSEXT_HD const T* rope_token_positions(const T* pos, const RopeParams& p, int64_t b, int64_t grid_token) {
  const int64_t entry = p.pos_batch > 1 ? b : 0;
  return pos + (entry * (p.tokens - p.num_prefix_tokens) + grid_token) * p.axes;
}

// angle of pair p for head-frequency row hf at token positions t ([A]); freqs [A, Hf, D/2] contiguous.
template <typename T>
POSEXT_HD T rope_angle(const T* t, const T* freqs, const RopeParams& p, int64_t hf, int64_t pair) {
  T angle = t[0] * freqs[rope_freq_index(p, 0, hf, pair)];
  for (int64_t a = 1; a < p.axes; ++a) angle += t[a] * freqs[rope_freq_index(p, a, hf, pair)];
  return angle;
}

template <typename T>
POSEXT_HD void rope_rotate(T a, T b, T c, T s, T& a_out, T& b_out) {
  a_out = a * c - b * s;
  b_out = a * s + b * c;
}

// dL/dangle of one pair: input (a, b), gradient of the output (ga, gb), cos/sin of the angle.
template <typename T>
POSEXT_HD T rope_angle_grad(T a, T b, T ga, T gb, T c, T s) {
  const T a_rot = a * c - b * s, b_rot = a * s + b * c;
  return gb * a_rot - ga * b_rot;
}

template <typename T>
POSEXT_HD void rope_sincos(T angle, T& s, T& c) {
  s = sin(angle);
  c = cos(angle);
}

}  // namespace posext
