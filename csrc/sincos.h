#pragma once
// Sin-cos position tables: the formula shared by the CPU and CUDA kernels.
//
// A table row has D channels cut into `num_bands` equal bands of F = D / num_bands channels. Band b holds
//   func_b(pos_b * omega_k),  k in [0, F),  omega_k = T^(-k / (F - freq_denominator_offset)),
// where func_b is sin or cos and pos_b is the token's x (column) or y (row) coordinate. Every published
// convention (MAE, big_vision, MoCo v3, timm) is one choice of band order plus the denominator offset
// (big_vision uses F - 1). Angles and values are computed in float64, then rounded once to the output
// dtype, so a float32 table is the correctly rounded float64 table.
#include <cmath>
#include <cstdint>

#include "macros.h"

namespace posext {

constexpr int kMaxBands = 4;
enum : int8_t { kAxisX = 0, kAxisY = 1 };

struct SinCosParams {
  int64_t embed_dim = 0;          // D
  int64_t band_width = 0;         // F = D / num_bands
  int num_bands = 0;              // 2 (1D: sin | cos) or 4 (2D)
  int freq_denominator_offset = 0;
  double temperature = 10000.0;
  int8_t band_axis[kMaxBands] = {0, 0, 0, 0};  // kAxisX / kAxisY (1D tables use kAxisX)
  int8_t band_cos[kMaxBands] = {0, 0, 0, 0};   // 0: sin, 1: cos
  // 2D tables only: grid and the zero rows in front of it.
  int64_t height = 0, width = 0, num_prefix_tokens = 0;
};

POSEXT_HD int band_of(const SinCosParams& p, int64_t channel) { return static_cast<int>(channel / p.band_width); }

// Band b follows the x (column) coordinate, else y (row); it holds cos, else sin.
POSEXT_HD bool band_along_x(const SinCosParams& p, int band) { return p.band_axis[band] == kAxisX; }
POSEXT_HD bool band_is_cos(const SinCosParams& p, int band) { return p.band_cos[band] != 0; }

// omega_k, computed as NumPy does: k / denom, then 1 / T^(that).
POSEXT_HD double freq_omega(const SinCosParams& p, int64_t k) {
  const double denom = static_cast<double>(p.band_width - p.freq_denominator_offset);
  return 1.0 / pow(p.temperature, static_cast<double>(k) / denom);
}

POSEXT_HD double channel_omega(const SinCosParams& p, int64_t channel) {
  return freq_omega(p, channel - band_of(p, channel) * p.band_width);
}

POSEXT_HD double angle_of(double pos, double omega) { return pos * omega; }

POSEXT_HD double channel_value(const SinCosParams& p, int64_t channel, double omega, double pos) {
  const double angle = angle_of(pos, omega);
  return band_is_cos(p, band_of(p, channel)) ? cos(angle) : sin(angle);
}

}  // namespace posext
