// sincos_3d (and its out= form): argument checks and parameters, shared by every device; and sincos_3d itself,
// which has no tensor to dispatch on: it makes its result on the asked device and fills it through
// sincos_3d_out, which the dispatcher routes to that device's kernel.
#include "sincos3d_op.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <cmath>
#include <vector>

namespace posext {

SinCos3dParams sincos_3d_params(int64_t embed_dim, int64_t depth, int64_t height, int64_t width,
                                int64_t num_prefix_tokens, double temperature, at::IntArrayRef bands,
                                at::ArrayRef<double> scales, bool float32_positions) {
  const char* op = "posext.sincos_3d";
  TORCH_CHECK(depth > 0 && height > 0 && width > 0, op, ": grid must be positive, got (", depth, ", ", height,
              ", ", width, ")");
  TORCH_CHECK(num_prefix_tokens >= 0, op, ": num_prefix_tokens must be >= 0, got ", num_prefix_tokens);
  TORCH_CHECK(embed_dim > 0, op, ": embed_dim must be > 0, got ", embed_dim);
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0, op, ": temperature must be finite and > 0, got ",
              temperature);
  TORCH_CHECK(bands.size() % 3 == 0 && bands.size() / 3 <= static_cast<size_t>(kMax3dBands), op,
              ": bands must hold at most ", kMax3dBands, " (code, width, frequencies) triples, got ",
              bands.size(), " ints");
  TORCH_CHECK(scales.size() == 3, op, ": expected 3 position scales (t, h, w), got ", scales.size());
  SinCos3dParams p;
  for (int a = 0; a < 3; ++a) {
    TORCH_CHECK(std::isfinite(scales[a]) && scales[a] > 0, op, ": position scales must be finite and > 0, got ",
                scales[a]);
    p.axis_scale[a] = scales[a];
  }
  p.num_bands = static_cast<int>(bands.size() / 3);
  int64_t start = 0;
  for (int b = 0; b < p.num_bands; ++b) {
    const int64_t code = bands[3 * b], band_width = bands[3 * b + 1], freqs = bands[3 * b + 2];
    TORCH_CHECK(code >= 0 && code <= 5, op, ": band code must be in [0, 5] (axis * 2 + is_cos), got ", code);
    TORCH_CHECK(band_width > 0 && freqs > 0, op, ": band widths and frequency counts must be > 0, got ",
                band_width, " and ", freqs);
    p.band_start[b] = start;
    p.band_width[b] = band_width;
    p.band_freqs[b] = freqs;
    p.band_axis[b] = static_cast<int8_t>(code / 2);
    p.band_cos[b] = static_cast<int8_t>(code % 2);
    start = checked_add(start, band_width, op, "the band widths");
  }
  TORCH_CHECK(p.num_bands == 0 || start == embed_dim, op, ": the band widths sum to ", start,
              ", expected embed_dim ", embed_dim);
  const int64_t tokens = checked_mul(checked_mul(depth, height, op, "depth * height"), width, op,
                                     "depth * height * width");
  const int64_t rows = checked_add(num_prefix_tokens, tokens, op, "num_prefix_tokens + depth * height * width");
  checked_mul(rows, embed_dim, op, "the table's element count");
  p.embed_dim = embed_dim;
  p.depth = depth;
  p.height = height;
  p.width = width;
  p.num_prefix_tokens = num_prefix_tokens;
  p.temperature = temperature;
  p.float32_positions = float32_positions;
  return p;
}

void check_sincos_3d_out(const at::Tensor& out, const SinCos3dParams& p) {
  const char* op = "posext.sincos_3d";
  const int64_t rows = p.num_prefix_tokens + p.depth * p.height * p.width;
  check_float(op, "out dtype", out.scalar_type());
  TORCH_CHECK(out.sizes() == at::IntArrayRef({rows, p.embed_dim}), op, ": out must have shape [", rows, ", ",
              p.embed_dim, "], got ", out.sizes());
  TORCH_CHECK(out.is_contiguous(), op, ": out must be contiguous");
}

namespace {

at::Tensor sincos_3d(int64_t embed_dim, int64_t depth, int64_t height, int64_t width, int64_t num_prefix_tokens,
                     double temperature, at::IntArrayRef bands, at::ArrayRef<double> scales, bool float32_positions,
                     at::ScalarType dtype, at::Device device) {
  check_float("posext.sincos_3d", "dtype", dtype);
  sincos_3d_params(embed_dim, depth, height, width, num_prefix_tokens, temperature, bands, scales,
                   float32_positions);
  at::Tensor out = at::empty({num_prefix_tokens + depth * height * width, embed_dim},
                             at::dtype(dtype).device(device));
  static const c10::OperatorHandle fill =
      c10::Dispatcher::singleton().findSchemaOrThrow("posext::sincos_3d_out", "");
  torch::jit::Stack stack{embed_dim,
                          depth,
                          height,
                          width,
                          num_prefix_tokens,
                          temperature,
                          std::vector<int64_t>(bands.begin(), bands.end()),
                          std::vector<double>(scales.begin(), scales.end()),
                          float32_positions,
                          out};
  fill.callBoxed(&stack);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(posext, CompositeExplicitAutograd, m) { m.impl("sincos_3d", &sincos_3d); }

}  // namespace posext
