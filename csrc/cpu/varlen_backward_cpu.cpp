// CPU varlen backward: the table's gradient as gathers over the transposed tap tables, in two passes, each
// parallel over rows it owns alone: deterministic, no atomics, bits independent of the thread count.
//   first  per image, the gradient pulled back along one axis into a buffer:
//          along x: R[oy][ix] = sum_f sum_ox wx G[f][oy][ox]    (h x the columns x reads)
//          along y: Q[iy][ox] = sum_oy sum_f wy G[f][oy][ox]    (the rows y reads x w)
//   second per table row iy, image after image: grad[iy][ix] += sum_oy wy R[oy][ix] or sum_ox wx Q[iy][ox].
// Each image takes the axis with fewer reads (which also keeps its buffer near its own size). Sums in opmath T.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "varlen_cpu_plan.h"
#include "varlen_cpu_sums.h"

namespace posext {
namespace {

// Where image b's first-pass buffer starts, and the unit list of the first pass: (image, oy) for images pulled
// back along x, (image, iy) for those pulled back along y.
template <typename T>
struct BackwardPlan {
  CallPlan<T> call;
  std::vector<bool> along_y;       // per image: the first pass pulls back along y (else x)
  std::vector<int64_t> buffer_at;  // [B + 1], in elements
  std::vector<VarlenUnit> first_pass;
};

// Whether pulling back along y reads less than along x (reads of C values, both passes together).
template <typename T>
bool pulls_along_y(const ImagePlan<T>& im) {
  const double taps_y = static_cast<double>(im.y->taps()), taps_x = static_cast<double>(im.x->taps());
  const double along_y = taps_y * im.g.w + static_cast<double>(im.y->columns()) * taps_x;
  const double along_x = taps_x * im.g.h + taps_y * static_cast<double>(im.x->columns());
  return along_y < along_x;
}

template <typename T>
int64_t buffer_rows(const ImagePlan<T>& im, bool along_y) {  // rows of C values
  return along_y ? im.y->columns() * im.g.w : im.g.h * im.x->columns();
}

template <typename T>
POSEXT_ISA_CLONES void pull_back(const VarlenParams& p, const T* grad, const ImagePlan<T>& im, bool along_y,
                                 int64_t index, T* buffer, Taps<T, T>& taps) {
  const int64_t C = p.channels;
  if (!along_y) {  // R[oy = index][ix - lo] over the columns the image reads
    const AxisTable<T>& X = *im.x;
    const AxisTable<T>& XT = *im.xt;
    for (int64_t ix = X.lo; ix <= X.hi; ++ix) {
      taps.clear();
      for (int64_t f = 0; f < im.g.t; ++f)
        for (int64_t e = XT.start[ix]; e < XT.start[ix + 1]; ++e)
          taps.push(grad + im.row(f, index, XT.idx[e], p.merge) * C, XT.w[e]);
      taps.sum_into(buffer + (index * X.columns() + ix - X.lo) * C, C);
    }
    return;
  }
  const AxisTable<T>& YT = *im.yt;  // Q[iy = index][ox]
  const int64_t w = im.g.w, iy = index;
  T* dst = buffer + (iy - im.y->lo) * w * C;
  if (p.merge == 1) {  // the w rows of (f, oy) are contiguous
    taps.clear();
    for (int64_t e = YT.start[iy]; e < YT.start[iy + 1]; ++e)
      for (int64_t f = 0; f < im.g.t; ++f) taps.push(grad + im.row(f, YT.idx[e], 0, 1) * C, YT.w[e]);
    taps.sum_into(dst, w * C);
    return;
  }
  for (int64_t ox = 0; ox < w; ++ox) {
    taps.clear();
    for (int64_t e = YT.start[iy]; e < YT.start[iy + 1]; ++e)
      for (int64_t f = 0; f < im.g.t; ++f) taps.push(grad + im.row(f, YT.idx[e], ox, p.merge) * C, YT.w[e]);
    taps.sum_into(dst + ox * C, C);
  }
}

// Table row iy of the gradient (acc: old_w x C), image after image.
template <typename T>
POSEXT_ISA_CLONES void gather_row(const VarlenParams& p, const BackwardPlan<T>& plan, const T* buffers,
                                  int64_t iy, std::vector<T>& acc, Taps<T, T>& taps) {
  const int64_t C = p.channels;
  std::fill(acc.begin(), acc.end(), T(0));
  for (size_t b = 0; b < plan.call.images.size(); ++b) {
    const ImagePlan<T>& im = plan.call.images[b];
    const T* buffer = buffers + plan.buffer_at[b];
    if (!plan.along_y[b]) {  // acc[lo..hi] += sum_oy wy R[oy]
      const AxisTable<T>& YT = *im.yt;
      const int64_t columns = im.x->columns();
      if (YT.start[iy] == YT.start[iy + 1] || columns == 0) continue;
      T* dst = acc.data() + im.x->lo * C;
      taps.clear();
      taps.push(dst, T(1));
      for (int64_t e = YT.start[iy]; e < YT.start[iy + 1]; ++e) taps.push(buffer + YT.idx[e] * columns * C, YT.w[e]);
      taps.sum_into(dst, columns * C);
      continue;
    }
    if (iy < im.y->lo || iy > im.y->hi) continue;  // acc[ix] += sum_ox wx Q[iy][ox]
    const AxisTable<T>& XT = *im.xt;
    const T* q = buffer + (iy - im.y->lo) * im.g.w * C;
    for (int64_t ix = 0; ix < p.old_w; ++ix) {
      if (XT.start[ix] == XT.start[ix + 1]) continue;
      taps.clear();
      taps.push(acc.data() + ix * C, T(1));
      for (int64_t e = XT.start[ix]; e < XT.start[ix + 1]; ++e) taps.push(q + XT.idx[e] * C, XT.w[e]);
      taps.sum_into(acc.data() + ix * C, C);
    }
  }
}

template <typename scalar_t, typename T>
void backward_table(const VarlenCall& c) {
  const VarlenParams& p = c.p;
  const int64_t C = p.channels, P = p.num_prefix_tokens;
  scalar_t* out = c.out.data_ptr<scalar_t>();
  std::fill(out, out + P * C, scalar_t(0));
  BackwardPlan<T> plan;
  make_plan(c, plan.call, /*with_transposed=*/true);
  plan.buffer_at.assign(1, 0);
  for (size_t b = 0; b < plan.call.images.size(); ++b) {
    const ImagePlan<T>& im = plan.call.images[b];
    const bool along_y = pulls_along_y(im);
    plan.along_y.push_back(along_y);
    plan.buffer_at.push_back(plan.buffer_at.back() + buffer_rows(im, along_y) * C);
    const int64_t first = along_y ? im.y->lo : 0, last = along_y ? im.y->hi + 1 : im.g.h;
    for (int64_t i = first; i < last; ++i) {
      const int64_t reads = along_y ? im.yt->taps(i) * im.g.w : im.x->taps();
      plan.first_pass.push_back({static_cast<int64_t>(b), i, i + 1, static_cast<double>(reads * im.g.t)});
    }
  }
  // From torch's allocator, so that memory profiles see it.
  const at::ScalarType opmath = c10::CppTypeToScalarType<T>::value;
  // A half / bfloat16 gradient is read as T: one conversion, then vector sums.
  const at::Tensor grad = c.in.scalar_type() == opmath ? c.in : c.in.to(opmath);
  const at::Tensor storage = at::empty({plan.buffer_at.back()}, c.in.options().dtype(opmath));
  T* buffers = storage.data_ptr<T>();
  const std::vector<int64_t> runs = balanced_runs(plan.first_pass, 4 * at::get_num_threads());
  at::parallel_for(0, static_cast<int64_t>(runs.size()) - 1, 1, [&](int64_t begin, int64_t end) {
    Taps<T, T> taps;
    for (int64_t u = runs[begin]; u < runs[end]; ++u) {
      const VarlenUnit& unit = plan.first_pass[u];
      pull_back(p, grad.const_data_ptr<T>(), plan.call.images[unit.image], plan.along_y[unit.image], unit.oy0,
                buffers + plan.buffer_at[unit.image], taps);
    }
  });
  at::parallel_for(0, p.old_h, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(p.old_w * C);
    Taps<T, T> taps;
    for (int64_t iy = begin; iy < end; ++iy) {
      gather_row(p, plan, buffers, iy, acc, taps);
      scalar_t* dst = out + (P + iy * p.old_w) * C;
      for (int64_t i = 0; i < p.old_w * C; ++i) dst[i] = static_cast<scalar_t>(acc[i]);
    }
  });
}

}  // namespace

void varlen_backward_cpu(const VarlenCall& c) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.in.scalar_type(), "posext_varlen_bwd_cpu", [&] {
    backward_table<scalar_t, at::opmath_type<scalar_t>>(c);
  });
}

}  // namespace posext
