// The one binding file: op schemas (TORCH_LIBRARY) and the Python module that carries the build facts. Each
// kernel file registers its implementations for its own dispatch key (TORCH_LIBRARY_IMPL in cpu/ and cuda/).
// The module is made with the plain CPython API: the ops reach Python through torch.ops.posext, so the heavy
// pybind11 / torch/extension.h headers are not needed here.
#include <Python.h>
#include <torch/library.h>
#include <torch/version.h>

TORCH_LIBRARY(posext, m) {
  // Sin-cos tables. `bands`: per band, axis * 2 + is_cos (axis 0 = x/column, 1 = y/row).
  m.def("sincos_2d(int embed_dim, SymInt height, SymInt width, int num_prefix_tokens, float temperature, "
        "int[] bands, int freq_denominator_offset, ScalarType dtype, Device device) -> Tensor");
  m.def("sincos_2d_out(int embed_dim, SymInt height, SymInt width, int num_prefix_tokens, float temperature, "
        "int[] bands, int freq_denominator_offset, *, Tensor(a!) out) -> ()");
  m.def("sincos_1d(Tensor positions, int embed_dim, float temperature, ScalarType dtype) -> Tensor");
  m.def("sincos_1d_out(Tensor positions, int embed_dim, float temperature, *, Tensor(a!) out) -> ()");
  // 3-D (video) tables [P + T*H*W, D], tokens row-major (t, h, w). `bands`: per band (axis * 2 + is_cos, width,
  // frequency count), axis 0 = t, 1 = h, 2 = w; empty: interleaved sin/cos over the flat token index. `scales`:
  // position divisors of t, h, w; float32_positions: scaled positions rounded to float32 (diffusers' grids).
  m.def("sincos_3d(int embed_dim, SymInt depth, SymInt height, SymInt width, int num_prefix_tokens, "
        "float temperature, int[] bands, float[] scales, bool float32_positions, ScalarType dtype, Device device) "
        "-> Tensor");
  m.def("sincos_3d_out(int embed_dim, SymInt depth, SymInt height, SymInt width, int num_prefix_tokens, "
        "float temperature, int[] bands, float[] scales, bool float32_positions, *, Tensor(a!) out) -> ()");
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
  // Variable-resolution batches: table [P + old_h*old_w, C] resampled to every image of grid_sizes [B, 3] (t, h, w)
  // int64; offsets [B + 1] int64: each image's first packed row. max_length < 0: packed [total_tokens, C];
  // else padded [B, max_length, C], zeros after each image's rows. Row order within an image: (t, h/m, w/m, m, m).
  m.def("resample_varlen(Tensor table, Tensor grid_sizes, Tensor offsets, int old_h, int old_w, "
        "int num_prefix_tokens, int mode, bool antialias, bool align_corners, int merge_size, SymInt total_tokens, "
        "SymInt max_length) -> Tensor");
  // The table's gradient [P + old_h*old_w, C] (prefix rows zero), summed over the images in order (deterministic).
  m.def("resample_varlen_backward(Tensor grad, Tensor grid_sizes, Tensor offsets, int old_h, int old_w, "
        "int num_prefix_tokens, int mode, bool antialias, bool align_corners, int merge_size, SymInt max_length) "
        "-> Tensor");
  // x (packed [T, C] or padded [B, max_length, C]) + resample_varlen(table, ...) without storing the rows (rounded
  // to the table's dtype first); padding rows of x returned unchanged.
  m.def("resample_varlen_add(Tensor x, Tensor table, Tensor grid_sizes, Tensor offsets, int old_h, int old_w, "
        "int num_prefix_tokens, int mode, bool antialias, bool align_corners, int merge_size, SymInt max_length) "
        "-> Tensor");
  // RoPE of q, k [B, H, N, D] (layout 0) or [B, N, H, D] (layout 1) over A = 1 to 3 position axes; positions
  // [N - P, A] (2-D: x, y), freqs [A, 1 or H, D/2] (one frequency per axis and rotated pair), both in opmath
  // dtype; pairs: 0 interleaved, 1 half (rotate_half).
  m.def("rope_2d(Tensor q, Tensor k, Tensor positions, Tensor freqs, int num_prefix_tokens, int layout, "
        "int pairs) -> (Tensor, Tensor)");
  m.def("rope_2d_(Tensor(a!) q, Tensor(b!) k, Tensor positions, Tensor freqs, int num_prefix_tokens, int layout, "
        "int pairs) -> ()");
  m.def("rope_2d_freqs_backward(Tensor grad_q, Tensor grad_k, Tensor q, Tensor k, Tensor positions, Tensor freqs, "
        "int num_prefix_tokens, int layout, int pairs) -> Tensor");
  // Factorized positions: out = x + term(positions[s]) for x [B, S, C]; positions [S, 2] (x, y) in table rows,
  // negative = prefix token (copied). combine: 0 sum, 1 concat, 2 a 2-D table_y [Ly, Lx, C] (table_x absent).
  m.def("factorized_add(Tensor x, Tensor positions, Tensor table_y, Tensor? table_x, int combine) -> Tensor");
  // Gradients w.r.t. table_y and table_x of factorized_add (grad: dL/dout [B, S, C]), deterministic: each table
  // row sums its tokens in token order, no atomics. An output not asked for (need_*) is an empty tensor.
  m.def("factorized_table_grads(Tensor grad, Tensor positions, Tensor table_y, Tensor? table_x, int combine, "
        "bool need_y, bool need_x) -> (Tensor, Tensor)");
}

#ifdef POSEXT_WITH_CUDA
#define POSEXT_CUDA_BUILT 1
#else
#define POSEXT_CUDA_BUILT 0
#endif
#define POSEXT_CONCAT(a, b) a##b
#define POSEXT_PYINIT(name) POSEXT_CONCAT(PyInit_, name)

static PyModuleDef posext_module = {PyModuleDef_HEAD_INIT, "posext._C",
                                    "posext's compiled ops, registered as torch.ops.posext.*", -1, nullptr};

PyMODINIT_FUNC POSEXT_PYINIT(TORCH_EXTENSION_NAME)() {
  PyObject* m = PyModule_Create(&posext_module);
  if (m == nullptr) return nullptr;
  PyObject* cuda_built = PyBool_FromLong(POSEXT_CUDA_BUILT);
  if (PyModule_AddObject(m, "cuda_built", cuda_built) < 0) {  // steals the reference only on success
    Py_XDECREF(cuda_built);
    Py_DECREF(m);
    return nullptr;
  }
  if (PyModule_AddStringConstant(m, "built_with_torch", TORCH_VERSION) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
