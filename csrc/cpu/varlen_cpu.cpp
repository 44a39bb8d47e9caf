// CPU varlen forward over the plan of varlen_cpu_plan.h: parallel over units (an output row, or a band of rows),
// an image's t frames copying each value once computed. Sums run in opmath T and round once. The backward is
// varlen_backward_cpu.cpp; both register here.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "varlen_cpu_plan.h"
#include "varlen_cpu_sums.h"

namespace posext {
namespace {

template <typename scalar_t, typename T>
struct ForwardCall {
  const VarlenParams& p;
  const T* table;         // past the prefix rows, in opmath T
  const scalar_t* add;    // x of the fused add, or null
  scalar_t* out;

  POSEXT_INLINE const T* cell(int64_t iy, int64_t ix) const { return table + (iy * p.old_w + ix) * p.channels; }
  // Whether an image's sums can be written straight into its one row (one frame, no add).
  POSEXT_INLINE bool in_place(const ImagePlan<T>& im) const { return im.g.t == 1 && add == nullptr; }
  // The value `acc` of (oy, ox) into its row of every frame.
  POSEXT_INLINE void emit(const ImagePlan<T>& im, int64_t oy, int64_t ox, const T* acc) const {
    const int64_t C = p.channels;
    for (int64_t f = 0; f < im.g.t; ++f) {
      const int64_t row = im.row(f, oy, ox, p.merge);
      scalar_t* dst = out + row * C;
      if (add) {
        const scalar_t* x = add + row * C;
        for (int64_t ch = 0; ch < C; ++ch)
          dst[ch] = static_cast<scalar_t>(static_cast<T>(x[ch]) + static_cast<T>(static_cast<scalar_t>(acc[ch])));
      } else {
        for (int64_t ch = 0; ch < C; ++ch) dst[ch] = static_cast<scalar_t>(acc[ch]);
      }
    }
  }
};

// Per-thread buffers of the forward units.
template <typename scalar_t, typename T>
struct ForwardScratch {
  std::vector<T> tmp, values;
  Taps<T, T> from_table;
};

// One output row, direct or rows first.
template <typename scalar_t, typename T>
POSEXT_ISA_CLONES void forward_row(const ForwardCall<scalar_t, T>& fc, const ImagePlan<T>& im, int64_t oy,
                                   ForwardScratch<scalar_t, T>& s) {
  const int64_t C = fc.p.channels;
  const AxisTable<T>& Y = *im.y;
  const AxisTable<T>& X = *im.x;
  const int64_t y0 = Y.start[oy], ny = Y.taps(oy);
  const bool rows_first = im.rows_first(oy);
  if (rows_first) {  // tmp[ix - lo] = sum_j wy_j table[iy_j][ix]: one contiguous span per table row
    s.tmp.resize(X.columns() * C);
    gather_sum(s.tmp.data(), fc.cell(0, X.lo), Y.idx.data() + y0, Y.w.data() + y0, ny, 0, fc.p.old_w * C,
               X.columns() * C);
  }
  s.values.resize(C);
  for (int64_t ox = 0; ox < im.g.w; ++ox) {
    const int64_t x0 = X.start[ox], nx = X.taps(ox);
    // (oy, ox) straight into its row when it has one, else through `values` into every frame's
    scalar_t* in_place = fc.in_place(im) ? fc.out + im.row(0, oy, ox, fc.p.merge) * C : nullptr;
    if (rows_first) {
      const StridedRows<T> taps{s.tmp.data(), X.idx.data() + x0, X.lo, C};
      if (in_place) weighted_sum<T, T>(in_place, taps, X.w.data() + x0, nx, C);
      else weighted_sum<T, T>(s.values.data(), taps, X.w.data() + x0, nx, C);
    } else {
      s.from_table.clear();
      for (int64_t j = 0; j < ny; ++j)
        for (int64_t k = 0; k < nx; ++k)
          s.from_table.push(fc.cell(Y.idx[y0 + j], X.idx[x0 + k]), Y.w[y0 + j] * X.w[x0 + k]);
      if (in_place) s.from_table.sum_into(in_place, C);
      else s.from_table.sum_into(s.values.data(), C);
    }
    if (!in_place) fc.emit(im, oy, ox, s.values.data());
  }
}

// A band of output rows [oy0, oy1), columns first: tmp holds the x pass of the band's table rows (rows x w x C).
template <typename scalar_t, typename T>
POSEXT_ISA_CLONES void forward_band(const ForwardCall<scalar_t, T>& fc, const ImagePlan<T>& im, int64_t oy0,
                                    int64_t oy1, ForwardScratch<scalar_t, T>& s) {
  const int64_t C = fc.p.channels, w = im.g.w;
  const AxisTable<T>& Y = *im.y;
  const AxisTable<T>& X = *im.x;
  int64_t r0, r1;
  Y.reach(oy0, oy1, r0, r1);
  s.tmp.resize(std::max<int64_t>(r1 - r0 + 1, 0) * w * C);
  for (int64_t iy = r0; iy <= r1; ++iy) {
    for (int64_t ox = 0; ox < w; ++ox) {
      T* dst = s.tmp.data() + ((iy - r0) * w + ox) * C;
      for (int64_t e = X.start[ox]; e < X.start[ox + 1]; ++e)
        axpy(dst, fc.cell(iy, X.idx[e]), X.w[e], C, e == X.start[ox]);
      if (X.taps(ox) == 0) std::fill(dst, dst + C, T(0));
    }
  }
  const bool contiguous = fc.in_place(im) && fc.p.merge == 1;  // an output row is then w x C in place
  for (int64_t oy = oy0; oy < oy1; ++oy) {
    const int64_t y0 = Y.start[oy], ny = Y.taps(oy);
    const T* tmp = s.tmp.data();
    if (contiguous) {
      gather_sum(fc.out + im.row(0, oy, 0, 1) * C, tmp, Y.idx.data() + y0, Y.w.data() + y0, ny, r0, w * C, w * C);
      continue;
    }
    s.values.resize(w * C);
    gather_sum(s.values.data(), tmp, Y.idx.data() + y0, Y.w.data() + y0, ny, r0, w * C, w * C);
    for (int64_t ox = 0; ox < w; ++ox) fc.emit(im, oy, ox, s.values.data() + ox * C);
  }
}

// A result of 32 MiB or more is fresh memory on every call (glibc maps blocks that large anew and unmaps them on
// free), and its first write faults it in 4 KiB page by 4 KiB page: on a VM that alone outlasts the sums. Huge
// pages, advised before that write, take 512x fewer faults. Advice only: without THP nothing changes.
void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  if (bytes < (size_t(32) << 20)) return;
  const uintptr_t first = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

template <typename scalar_t, typename T>
void forward_rows(const VarlenCall& c) {
  const VarlenParams& p = c.p;
  const int64_t C = p.channels;
  advise_huge_pages(c.out.data_ptr(), c.out.nbytes());
  CallPlan<T> plan;
  make_plan(c, plan);
  // A half / bfloat16 table is read as T: one conversion of the table, not one per tap (and vector sums).
  const at::ScalarType opmath = c10::CppTypeToScalarType<T>::value;
  const at::Tensor table = c.in.scalar_type() == opmath ? c.in : c.in.to(opmath);
  const ForwardCall<scalar_t, T> fc{p, table.const_data_ptr<T>() + p.num_prefix_tokens * C,
                                    p.add ? c.addend.const_data_ptr<scalar_t>() : nullptr, c.out.data_ptr<scalar_t>()};
  const std::vector<int64_t> runs = balanced_runs(plan.units, 4 * at::get_num_threads());
  at::parallel_for(0, static_cast<int64_t>(runs.size()) - 1, 1, [&](int64_t begin, int64_t end) {
    ForwardScratch<scalar_t, T> scratch;
    for (int64_t u = runs[begin]; u < runs[end]; ++u) {
      const VarlenUnit& unit = plan.units[u];
      const ImagePlan<T>& im = plan.images[unit.image];
      if (im.columns_first) forward_band<scalar_t>(fc, im, unit.oy0, unit.oy1, scratch);
      else forward_row<scalar_t>(fc, im, unit.oy0, scratch);
    }
  });
  if (!is_padded(p)) return;
  at::parallel_for(0, p.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {  // the rows after image b's tokens: zeros, or x's rows
      const int64_t first = (b * p.max_length + image_tokens(plan.images[b].g)) * C, last = (b + 1) * p.max_length * C;
      if (fc.add) std::copy(fc.add + first, fc.add + last, fc.out + first);
      else std::fill(fc.out + first, fc.out + last, scalar_t(0));
    }
  });
}

}  // namespace

void varlen_forward_cpu(const VarlenCall& c) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.in.scalar_type(), "posext_varlen_cpu", [&] {
    forward_rows<scalar_t, at::opmath_type<scalar_t>>(c);
  });
}

TORCH_LIBRARY_IMPL(posext, CPU, m) { VarlenOps<varlen_forward_cpu, varlen_backward_cpu>::register_kernels(m); }

}  // namespace posext
