// The one binding file: op schemas (TORCH_LIBRARY) and build facts for Python. Kernels register their
// implementations next to their code (TORCH_LIBRARY_IMPL in cpu/, cuda/ and *_op.cpp).
#include <torch/extension.h>
#include <torch/library.h>

TORCH_LIBRARY(posext, m) {
  // Sin-cos tables. `bands`: per band, axis * 2 + is_cos (axis 0 = x/column, 1 = y/row).
  m.def("sincos_2d(int embed_dim, SymInt height, SymInt width, int num_prefix_tokens, float temperature, "
        "int[] bands, int freq_denominator_offset, ScalarType dtype, Device device) -> Tensor");
  m.def("sincos_2d_out(int embed_dim, SymInt height, SymInt width, int num_prefix_tokens, float temperature, "
        "int[] bands, int freq_denominator_offset, *, Tensor(a!) out) -> ()");
  m.def("sincos_1d(Tensor positions, int embed_dim, float temperature, ScalarType dtype) -> Tensor");
  m.def("sincos_1d_out(Tensor positions, int embed_dim, float temperature, *, Tensor(a!) out) -> ()");
  // Grid resampling of [B, P + H*W, C] tokens. mode: 0 nearest, 1 bilinear, 2 bicubic; scale_h/w <= 0: none
  // (kernel scale in/out), else the user's scale_factor (kernel scale 1/sf, as F.interpolate).
  m.def("resample(Tensor input, int old_h, int old_w, SymInt new_h, SymInt new_w, int num_prefix_tokens, "
        "int mode, bool antialias, bool align_corners, float scale_h, float scale_w) -> Tensor");
  m.def("resample_backward(Tensor grad_out, int old_h, int old_w, SymInt new_h, SymInt new_w, "
        "int num_prefix_tokens, int mode, bool antialias, bool align_corners, float scale_h, float scale_w) -> Tensor");
  // x [B, P + new_h*new_w, C] + resample(pos_embed [1 or B, P + old_h*old_w, C], ...) without storing the resized
  // table (its rows rounded to the dtype, as an unfused x + table would add them).
  m.def("resample_add(Tensor x, Tensor pos_embed, int old_h, int old_w, SymInt new_h, SymInt new_w, "
        "int num_prefix_tokens, int mode, bool antialias, bool align_corners, float scale_h, float scale_w) -> Tensor");
  // 2D RoPE of q, k [B, H, N, D] (layout 0) or [B, N, H, D] (layout 1); positions [N - P, 2] (x, y), freqs
  // [2, 1 or H, D/2] (fx, fy per rotated pair), both in opmath dtype; pairs: 0 interleaved, 1 half (rotate_half).
  m.def("rope_2d(Tensor q, Tensor k, Tensor positions, Tensor freqs, int num_prefix_tokens, int layout, "
        "int pairs) -> (Tensor, Tensor)");
  m.def("rope_2d_(Tensor(a!) q, Tensor(b!) k, Tensor positions, Tensor freqs, int num_prefix_tokens, int layout, "
        "int pairs) -> ()");
  m.def("rope_2d_freqs_backward(Tensor grad_q, Tensor grad_k, Tensor q, Tensor k, Tensor positions, Tensor freqs, "
        "int num_prefix_tokens, int layout, int pairs) -> Tensor");
  // Factorized positions: out = x + term(positions[s]) for x [B, S, C]; positions [S, 2] (row, col) in table rows,
  // negative = prefix token (copied). combine: 0 sum, 1 concat, 2 a 2-D table_y [Ly, Lx, C] (table_x absent).
  m.def("factorized_add(Tensor x, Tensor positions, Tensor table_y, Tensor? table_x, int combine) -> Tensor");
  // Gradients w.r.t. table_y and table_x of factorized_add (grad: dL/dout [B, S, C]), deterministic: each table
  // row sums its tokens in token order, no atomics. An output not asked for (need_*) is an empty tensor.
  m.def("factorized_table_grads(Tensor grad, Tensor positions, Tensor table_y, Tensor? table_x, int combine, "
        "bool need_y, bool need_x) -> (Tensor, Tensor)");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
#ifdef POSEXT_WITH_CUDA
  m.attr("cuda_built") = true;
#else
  m.attr("cuda_built") = false;
#endif
  m.attr("built_with_torch") = TORCH_VERSION;
}
