#pragma once
// factorized_add / factorized_table_grads: the checked call (factorized_op.cpp) and the per-device kernels.
// Each device's kernel file registers FactorizedOps<its kernels> for its dispatch key.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "factorized.h"

namespace posext {

// Kernels: x/out [B, S, C] with unit channel stride, tables contiguous, positions [S, 2] in opmath dtype.
// The table gradient: out[r, c] = sum over row r's entries e of weights[e] * sum_b grad[b, tokens[e],
// channel_offset + c], entries tokens/weights[offsets[r] .. offsets[r + 1]) (built by factorized_op.cpp).
using FactorizedAdd = void (*)(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                               const at::Tensor& table_x, at::Tensor& out, const FactorizedParams& p);
using FactorizedTableGrad = void (*)(const at::Tensor& grad, const at::Tensor& offsets, const at::Tensor& tokens,
                                     const at::Tensor& weights, int64_t channel_offset, at::Tensor& out);

void factorized_add_cpu(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                        const at::Tensor& table_x, at::Tensor& out, const FactorizedParams& p);
void factorized_table_grad_cpu(const at::Tensor& grad, const at::Tensor& offsets, const at::Tensor& tokens,
                               const at::Tensor& weights, int64_t channel_offset, at::Tensor& out);
void factorized_add_cuda(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                         const at::Tensor& table_x, at::Tensor& out, const FactorizedParams& p);
void factorized_table_grad_cuda(const at::Tensor& grad, const at::Tensor& offsets, const at::Tensor& tokens,
                                const at::Tensor& weights, int64_t channel_offset, at::Tensor& out);

// One factorized_add, checked and laid out for a kernel (nothing to compute when `out` is empty).
struct FactorizedCall {
  at::Tensor x, positions, table_y, table_x, out;
  FactorizedParams p;
};

FactorizedCall prepare_factorized_add(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                                      const std::optional<at::Tensor>& table_x, int64_t combine);
// The table gradients through `kernel` (one call per table): the per-row token lists are built on the host.
std::tuple<at::Tensor, at::Tensor> factorized_table_grads_with(FactorizedTableGrad kernel, const at::Tensor& grad,
                                                               const at::Tensor& positions, const at::Tensor& table_y,
                                                               const std::optional<at::Tensor>& table_x,
                                                               int64_t combine, bool need_y, bool need_x);

// The two ops on one device, given its kernels (the signatures are the schemas of bindings.cpp).
template <FactorizedAdd Add, FactorizedTableGrad TableGrad>
struct FactorizedOps {
  static at::Tensor factorized_add(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& table_y,
                                   const std::optional<at::Tensor>& table_x, int64_t combine) {
    FactorizedCall c = prepare_factorized_add(x, positions, table_y, table_x, combine);
    if (c.out.numel() > 0) Add(c.x, c.positions, c.table_y, c.table_x, c.out, c.p);
    return c.out;
  }
  static std::tuple<at::Tensor, at::Tensor> factorized_table_grads(const at::Tensor& grad, const at::Tensor& positions,
                                                                   const at::Tensor& table_y,
                                                                   const std::optional<at::Tensor>& table_x,
                                                                   int64_t combine, bool need_y, bool need_x) {
    return factorized_table_grads_with(TableGrad, grad, positions, table_y, table_x, combine, need_y, need_x);
  }
  static void register_kernels(torch::Library& m) {
    m.impl("factorized_add", &factorized_add);
    m.impl("factorized_table_grads", &factorized_table_grads);
  }
};

}  // namespace posext
