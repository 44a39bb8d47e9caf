// sincos_2d / sincos_1d (and their out= forms): argument checks and parameters, shared by every device; and
// sincos_2d itself, which has no tensor to dispatch on: it makes its result on the asked device and fills it
// through sincos_2d_out, which the dispatcher routes to that device's kernel.
#include "sincos_op.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <cmath>
#include <vector>

namespace posext {

SinCosParams sincos_params(int64_t embed_dim, int64_t num_bands, at::IntArrayRef bands, double temperature,
                           int64_t freq_denominator_offset) {
  TORCH_CHECK(num_bands >= 1 && num_bands <= kMaxBands, "posext: num_bands must be in [1, 4], got ", num_bands);
  TORCH_CHECK(static_cast<int64_t>(bands.size()) == num_bands, "posext: expected ", num_bands,
              " band codes, got ", bands.size());
  TORCH_CHECK(embed_dim > 0 && embed_dim % num_bands == 0, "posext: embed_dim must be a positive multiple of ",
              num_bands, ", got ", embed_dim);
  TORCH_CHECK(freq_denominator_offset == 0 || freq_denominator_offset == 1,
              "posext: freq_denominator_offset must be 0 or 1, got ", freq_denominator_offset);
  TORCH_CHECK(embed_dim / num_bands > freq_denominator_offset, "posext: embed_dim ", embed_dim,
              " too small: the frequency denominator embed_dim/", num_bands, " - ", freq_denominator_offset,
              " must be positive");
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0, "posext: temperature must be finite and > 0, got ",
              temperature);
  SinCosParams p;
  p.embed_dim = embed_dim;
  p.num_bands = static_cast<int>(num_bands);
  p.band_width = embed_dim / num_bands;
  p.freq_denominator_offset = static_cast<int>(freq_denominator_offset);
  p.temperature = temperature;
  for (int64_t b = 0; b < num_bands; ++b) {
    TORCH_CHECK(bands[b] >= 0 && bands[b] <= 3, "posext: band code must be in [0, 3], got ", bands[b]);
    p.band_axis[b] = static_cast<int8_t>(bands[b] / 2);
    p.band_cos[b] = static_cast<int8_t>(bands[b] % 2);
  }
  return p;
}

SinCosParams sincos_2d_params(int64_t embed_dim, int64_t height, int64_t width, int64_t num_prefix_tokens,
                              double temperature, at::IntArrayRef bands, int64_t freq_denominator_offset) {
  const char* op = "posext.sincos_2d";
  TORCH_CHECK(height > 0 && width > 0, op, ": grid must be positive, got (", height, ", ", width, ")");
  TORCH_CHECK(num_prefix_tokens >= 0, op, ": num_prefix_tokens must be >= 0, got ", num_prefix_tokens);
  SinCosParams p = sincos_params(embed_dim, 4, bands, temperature, freq_denominator_offset);
  const int64_t rows = checked_add(num_prefix_tokens, checked_mul(height, width, op, "height * width"), op,
                                   "num_prefix_tokens + height * width");
  checked_mul(rows, embed_dim, op, "the table's element count");
  p.height = height;
  p.width = width;
  p.num_prefix_tokens = num_prefix_tokens;
  return p;
}

namespace {

void check_out(const char* op, const at::Tensor& out, at::IntArrayRef expected_shape) {
  check_float(op, "out dtype", out.scalar_type());
  TORCH_CHECK(out.sizes() == expected_shape, op, ": out must have shape ", expected_shape, ", got ", out.sizes());
  TORCH_CHECK(out.is_contiguous(), op, ": out must be contiguous");
}

at::Tensor sincos_2d(int64_t embed_dim, int64_t height, int64_t width, int64_t num_prefix_tokens, double temperature,
                     at::IntArrayRef bands, int64_t freq_denominator_offset, at::ScalarType dtype, at::Device device) {
  check_float("posext.sincos_2d", "dtype", dtype);
  sincos_2d_params(embed_dim, height, width, num_prefix_tokens, temperature, bands, freq_denominator_offset);
  at::Tensor out = at::empty({num_prefix_tokens + height * width, embed_dim}, at::dtype(dtype).device(device));
  static const c10::OperatorHandle fill =
      c10::Dispatcher::singleton().findSchemaOrThrow("posext::sincos_2d_out", "");
  torch::jit::Stack stack{embed_dim, height, width, num_prefix_tokens, temperature,
                          std::vector<int64_t>(bands.begin(), bands.end()), freq_denominator_offset, out};
  fill.callBoxed(&stack);
  return out;
}

}  // namespace

void check_sincos_2d_out(const at::Tensor& out, const SinCosParams& p) {
  check_out("posext.sincos_2d", out, {p.num_prefix_tokens + p.height * p.width, p.embed_dim});
}

SinCosParams sincos_1d_params(const at::Tensor& positions, int64_t embed_dim, double temperature) {
  TORCH_CHECK(positions.dim() == 1, "posext.sincos_1d: positions must be 1-D [M], got shape ", positions.sizes());
  TORCH_CHECK(!positions.is_complex() && positions.scalar_type() != at::kBool,
              "posext.sincos_1d: positions must be real numbers, got ", positions.scalar_type());
  return sincos_params(embed_dim, 2, {0, 1}, temperature, 0);
}

void check_sincos_1d_out(const at::Tensor& out, const at::Tensor& positions, int64_t embed_dim) {
  check_out("posext.sincos_1d", out, {positions.size(0), embed_dim});
  check_same_device("posext.sincos_1d", "positions and out", {positions, out});
}

TORCH_LIBRARY_IMPL(posext, CompositeExplicitAutograd, m) { m.impl("sincos_2d", &sincos_2d); }

}  // namespace posext
