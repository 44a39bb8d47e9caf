#pragma once
// 3-D (video) sin-cos position tables: the formula shared by the CPU and CUDA kernels.
//
// The grid tokens of a (T, H, W) grid are row-major: token n sits at t = n / (H*W), h = (n / W) % H,
// w = n % W. Every channel c reads one coordinate q of its token, along its axis, and holds sin or cos of
// one angle:
//   banded layout (num_bands > 0): channels are cut into runs ("bands"); band b covers channels
//     [start_b, start_b + width_b), reads axis t, h or w and holds func_b(pos * omega_k), k = c - start_b,
//     omega_k = 1 / T^(k / F_b). F_b (the band's frequency count) exceeds width_b where a convention cuts its
//     last band short (V-JEPA's uniform_power), so the frequencies do not depend on the cut.
//   interleaved layout (num_bands == 0): the axis is the flat token index n, channel c holds sin (c even) or
//     cos (c odd) of n / T^(2 * (c / 2) / D), divided rather than multiplied, as VideoMAE computes it.
// pos is q / scale along the axis; with float32_positions it is rounded to float32 as a float32 grid would
// hold it (diffusers builds its grids in float32). Everything else is float64, rounded once to the output.
#include <cmath>
#include <cstdint>

#include "macros.h"

namespace posext {

constexpr int kMax3dBands = 6;
enum : int8_t { kAxis3dT = 0, kAxis3dH = 1, kAxis3dW = 2, kAxis3dFlat = 3 };

struct SinCos3dParams {
  int64_t embed_dim = 0;  // D
  int64_t depth = 0, height = 0, width = 0, num_prefix_tokens = 0;
  double temperature = 10000.0;
  int num_bands = 0;  // 0: interleaved layout over the flat token index
  int64_t band_start[kMax3dBands] = {0, 0, 0, 0, 0, 0};
  int64_t band_width[kMax3dBands] = {0, 0, 0, 0, 0, 0};
  int64_t band_freqs[kMax3dBands] = {0, 0, 0, 0, 0, 0};  // F_b
  int8_t band_axis[kMax3dBands] = {0, 0, 0, 0, 0, 0};    // kAxis3dT / H / W
  int8_t band_cos[kMax3dBands] = {0, 0, 0, 0, 0, 0};     // 0: sin, 1: cos
  double axis_scale[3] = {1.0, 1.0, 1.0};                // position divisor per axis (t, h, w)
  bool float32_positions = false;
};

// One channel's formula: angle = pos * factor, or pos / factor (interleaved layout).
struct Channel3d {
  double factor;
  int8_t axis;
  bool divide, is_cos;
};

POSEXT_HD int band3d_of(const SinCos3dParams& p, int64_t c) {
  int b = 0;
  while (b + 1 < p.num_bands && c >= p.band_start[b + 1]) ++b;
  return b;
}

POSEXT_HD Channel3d channel3d(const SinCos3dParams& p, int64_t c) {
  Channel3d ch;
  if (p.num_bands == 0) {
    // As VideoMAE: the exponent 2 * (c // 2) / D is one division, then the angle divides by T^exponent.
    const double exponent = static_cast<double>(2 * (c / 2)) / static_cast<double>(p.embed_dim);
    ch.factor = pow(p.temperature, exponent);
    ch.axis = kAxis3dFlat;
    ch.divide = true;
    ch.is_cos = (c % 2) != 0;
    return ch;
  }
  const int b = band3d_of(p, c);
  const double k = static_cast<double>(c - p.band_start[b]);
  // As NumPy: k / F, then 1 / T^(that).
  ch.factor = 1.0 / pow(p.temperature, k / static_cast<double>(p.band_freqs[b]));
  ch.axis = p.band_axis[b];
  ch.divide = false;
  ch.is_cos = p.band_cos[b] != 0;
  return ch;
}

POSEXT_HD int64_t axis3d_length(const SinCos3dParams& p, int axis) {
  switch (axis) {
    case kAxis3dT: return p.depth;
    case kAxis3dH: return p.height;
    case kAxis3dW: return p.width;
    default: return p.depth * p.height * p.width;
  }
}

// The position of coordinate q along `axis`. A float32 grid holds q exactly (q < 2^24) and q / s rounded once:
// the float64 quotient of two floats rounds to the same float32 as a float32 division (53 >= 2 * 24 + 2 bits).
POSEXT_HD double position3d(const SinCos3dParams& p, int axis, int64_t q) {
  if (axis == kAxis3dFlat) return static_cast<double>(q);
  const double s = p.axis_scale[axis];
  if (p.float32_positions) {
    const double qf = static_cast<double>(static_cast<float>(q));
    return static_cast<double>(static_cast<float>(qf / static_cast<double>(static_cast<float>(s))));
  }
  return s == 1.0 ? static_cast<double>(q) : static_cast<double>(q) / s;
}

POSEXT_HD double channel3d_value(const Channel3d& ch, double pos) {
  const double angle = ch.divide ? pos / ch.factor : pos * ch.factor;
  return ch.is_cos ? cos(angle) : sin(angle);
}

}  // namespace posext
