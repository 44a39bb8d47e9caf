// sincos_2d / sincos_1d (and their out= forms): argument checks, parameters and device routing.
#include <torch/library.h>

#include "ops.h"

namespace posext {

SinCosParams sincos_params(int64_t embed_dim, int64_t num_bands, at::IntArrayRef bands,
                           double temperature, int64_t freq_denominator_offset) {
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

namespace {

void check_float_dtype(const char* op, at::ScalarType dtype) {
  TORCH_CHECK(dtype == at::kDouble || dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": dtype must be float64, float32, float16 or bfloat16, got ", dtype);
}

void check_out(const char* op, const at::Tensor& out, at::IntArrayRef expected_shape) {
  check_float_dtype(op, out.scalar_type());
  TORCH_CHECK(out.sizes() == expected_shape, op, ": out must have shape ", expected_shape, ", got ", out.sizes());
  TORCH_CHECK(out.is_contiguous(), op, ": out must be contiguous");
}

[[noreturn]] void unsupported_device(const char* op, const at::Device& device) {
  TORCH_CHECK(false, op, ": no kernel for device ", device,
              device.is_cuda() ? " (posext was built without CUDA kernels; use POSEXT_BACKEND=python)" : "");
}

SinCosParams params_2d(int64_t embed_dim, int64_t height, int64_t width, int64_t num_prefix_tokens,
                       double temperature, at::IntArrayRef bands, int64_t freq_denominator_offset) {
  TORCH_CHECK(height > 0 && width > 0, "posext.sincos_2d: grid must be positive, got (", height, ", ", width, ")");
  TORCH_CHECK(num_prefix_tokens >= 0, "posext.sincos_2d: num_prefix_tokens must be >= 0, got ", num_prefix_tokens);
  SinCosParams p = sincos_params(embed_dim, 4, bands, temperature, freq_denominator_offset);
  p.height = height;
  p.width = width;
  p.num_prefix_tokens = num_prefix_tokens;
  return p;
}

void fill_2d(at::Tensor& out, const SinCosParams& p) {
  if (out.device().is_cpu()) return sincos_2d_cpu(out, p);
#ifdef POSEXT_WITH_CUDA
  if (out.device().is_cuda()) return sincos_2d_cuda(out, p);
#endif
  if (!out.device().is_meta()) unsupported_device("posext.sincos_2d", out.device());
}

void fill_1d(at::Tensor& out, const at::Tensor& positions, const SinCosParams& p) {
  TORCH_CHECK(positions.device() == out.device(), "posext.sincos_1d: positions on ", positions.device(),
              " but out on ", out.device());
  if (out.device().is_cpu()) return sincos_1d_cpu(out, positions, p);
#ifdef POSEXT_WITH_CUDA
  if (out.device().is_cuda()) return sincos_1d_cuda(out, positions, p);
#endif
  if (!out.device().is_meta()) unsupported_device("posext.sincos_1d", out.device());
}

at::Tensor sincos_2d(int64_t embed_dim, int64_t height, int64_t width, int64_t num_prefix_tokens,
                     double temperature, at::IntArrayRef bands, int64_t freq_denominator_offset,
                     at::ScalarType dtype, at::Device device) {
  check_float_dtype("posext.sincos_2d", dtype);
  const SinCosParams p = params_2d(embed_dim, height, width, num_prefix_tokens, temperature, bands,
                                   freq_denominator_offset);
  at::Tensor out = at::empty({num_prefix_tokens + height * width, embed_dim}, at::dtype(dtype).device(device));
  fill_2d(out, p);
  return out;
}

void sincos_2d_out(int64_t embed_dim, int64_t height, int64_t width, int64_t num_prefix_tokens, double temperature,
                   at::IntArrayRef bands, int64_t freq_denominator_offset, at::Tensor out) {
  const SinCosParams p = params_2d(embed_dim, height, width, num_prefix_tokens, temperature, bands,
                                   freq_denominator_offset);
  check_out("posext.sincos_2d", out, {num_prefix_tokens + height * width, embed_dim});
  fill_2d(out, p);
}

void check_positions(const at::Tensor& positions) {
  TORCH_CHECK(positions.dim() == 1, "posext.sincos_1d: positions must be 1-D [M], got shape ", positions.sizes());
  TORCH_CHECK(!positions.is_complex() && positions.scalar_type() != at::kBool,
              "posext.sincos_1d: positions must be real numbers, got ", positions.scalar_type());
}

at::Tensor sincos_1d(const at::Tensor& positions, int64_t embed_dim, double temperature, at::ScalarType dtype) {
  check_positions(positions);
  check_float_dtype("posext.sincos_1d", dtype);
  const SinCosParams p = sincos_params(embed_dim, 2, {0, 1}, temperature, 0);
  at::Tensor out = at::empty({positions.size(0), embed_dim}, positions.options().dtype(dtype));
  fill_1d(out, positions, p);
  return out;
}

void sincos_1d_out(const at::Tensor& positions, int64_t embed_dim, double temperature, at::Tensor out) {
  check_positions(positions);
  const SinCosParams p = sincos_params(embed_dim, 2, {0, 1}, temperature, 0);
  check_out("posext.sincos_1d", out, {positions.size(0), embed_dim});
  fill_1d(out, positions, p);
}

}  // namespace

// sincos_2d has no tensor input, so the dispatcher cannot pick a backend: all four route on the device here.
TORCH_LIBRARY_IMPL(posext, CompositeExplicitAutograd, m) {
  m.impl("sincos_2d", &sincos_2d);
  m.impl("sincos_2d_out", &sincos_2d_out);
  m.impl("sincos_1d", &sincos_1d);
  m.impl("sincos_1d_out", &sincos_1d_out);
}

}  // namespace posext
