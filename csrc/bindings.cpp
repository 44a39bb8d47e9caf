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
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
#ifdef POSEXT_WITH_CUDA
  m.attr("cuda_built") = true;
#else
  m.attr("cuda_built") = false;
#endif
  m.attr("built_with_torch") = TORCH_VERSION;
}
