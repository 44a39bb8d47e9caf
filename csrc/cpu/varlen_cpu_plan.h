#pragma once
// The CPU varlen kernels' plan of one call: each distinct output size of each axis as a tap table (resample.h's
// taps, so the weights are the CUDA kernel's), and the work as units of output rows, each image evaluated in
// the order that reads the least (C multiply-adds per read):
//   direct         out[y][x] = sum_j sum_k wy_j wx_k table[iy_j][ix_k]           reads per row: ny * taps_x
//   rows first     row[ix] = sum_j wy_j table[iy_j][ix] over the columns in use,
//                  out[y][x] = sum_k wx_k row[ix_k]                              ny * columns + taps_x
//   columns first  for a band of output rows, cols[iy][x] = sum_k wx_k table[iy][ix_k] over the band's table
//                  rows, then out[y][x] = sum_j wy_j cols[iy_j][x]     (band rows * taps_x + taps_y * w) / band
// Rows first wins when an output row has more taps than the table row has columns (upsampling along x), columns
// first when y is upsampled and x downsampled (each table row's x pass then serves several output rows).
#include <algorithm>
#include <map>
#include <vector>

#include "varlen_op.h"

namespace posext {

// The taps of every output index o of one axis: entries [start[o], start[o + 1]) of idx / w.
template <typename T>
struct AxisTable {
  std::vector<int64_t> start, idx;
  std::vector<T> w;
  int64_t lo = 0, hi = -1;  // the input indices some tap reads

  int64_t taps() const { return start.back(); }
  int64_t taps(int64_t o) const { return start[o + 1] - start[o]; }
  int64_t columns() const { return hi >= lo ? hi - lo + 1 : 0; }
  // The input indices outputs [o0, o1) read: [lo_out, hi_out] (empty when hi_out < lo_out).
  void reach(int64_t o0, int64_t o1, int64_t& lo_out, int64_t& hi_out) const {
    lo_out = hi + 1;
    hi_out = lo - 1;
    for (int64_t e = start[o0]; e < start[o1]; ++e) {
      lo_out = std::min(lo_out, idx[e]);
      hi_out = std::max(hi_out, idx[e]);
    }
  }
};

template <typename T>
AxisTable<T> axis_table(int64_t in_size, int64_t out_size, const VarlenParams& p) {
  const ResampleAxis a = varlen_axis<T>(in_size, out_size, p);
  AxisTable<T> t;
  std::vector<int64_t> idx(a.max_taps);
  std::vector<T> w(a.max_taps);
  t.start.reserve(out_size + 1);
  t.start.push_back(0);
  t.lo = in_size;
  for (int64_t o = 0; o < out_size; ++o) {
    const int n = axis_taps<T>(a, p.mode, p.antialias, p.align_corners, o, idx.data(), w.data());
    for (int k = 0; k < n; ++k) {
      t.idx.push_back(idx[k]);
      t.w.push_back(w[k]);
      t.lo = std::min(t.lo, idx[k]);
      t.hi = std::max(t.hi, idx[k]);
    }
    t.start.push_back(static_cast<int64_t>(t.idx.size()));
  }
  return t;
}

// The transpose of an axis table: for every input index i, the outputs o whose taps read i (o ascending) with
// those taps' weights (an output reading i twice, at a clamped border, appears twice).
template <typename T>
AxisTable<T> transposed(const AxisTable<T>& t, int64_t in_size) {
  AxisTable<T> r;
  const int64_t outputs = static_cast<int64_t>(t.start.size()) - 1;
  r.start.assign(in_size + 1, 0);
  for (int64_t e = 0; e < t.taps(); ++e) ++r.start[t.idx[e] + 1];
  for (int64_t i = 0; i < in_size; ++i) r.start[i + 1] += r.start[i];
  r.idx.resize(t.taps());
  r.w.resize(t.taps());
  std::vector<int64_t> next(r.start.begin(), r.start.end() - 1);
  for (int64_t o = 0; o < outputs; ++o)
    for (int64_t e = t.start[o]; e < t.start[o + 1]; ++e) {
      const int64_t k = next[t.idx[e]]++;
      r.idx[k] = o;
      r.w[k] = t.w[e];
    }
  r.lo = outputs;
  for (int64_t e = 0; e < t.taps(); ++e) {
    r.lo = std::min(r.lo, r.idx[e]);
    r.hi = std::max(r.hi, r.idx[e]);
  }
  return r;
}

// One image as the kernels walk it: its sizes, its first result row, its two axes' tables and its order.
template <typename T>
struct ImagePlan {
  VarlenImage g;
  int64_t base = 0;
  const AxisTable<T>* y = nullptr;
  const AxisTable<T>* x = nullptr;
  const AxisTable<T>* yt = nullptr;  // their transposes (backward plans only)
  const AxisTable<T>* xt = nullptr;
  bool columns_first = false;  // else each output row direct or rows first

  bool rows_first(int64_t oy) const {
    const int64_t ny = y->taps(oy), columns = x->columns();
    return ny > 1 && columns > 0 && ny * columns + x->taps() < ny * x->taps();
  }
  // Reads (of C values) of output row oy in the order it takes when the image goes row by row.
  double row_reads(int64_t oy) const {
    const int64_t ny = y->taps(oy);
    return static_cast<double>(rows_first(oy) ? ny * x->columns() + x->taps() : ny * x->taps());
  }
  // Reads of output rows [oy0, oy1) as a columns-first band: the x taps over the band's table rows, then
  // the y taps over the band's w columns.
  double band_reads(int64_t oy0, int64_t oy1) const {
    int64_t lo, hi;
    y->reach(oy0, oy1, lo, hi);
    return static_cast<double>(std::max<int64_t>(hi - lo + 1, 0) * x->taps() + (y->start[oy1] - y->start[oy0]) * g.w);
  }
  int64_t row(int64_t frame, int64_t oy, int64_t ox, int64_t merge) const {
    return base + frame * g.h * g.w + position_row(oy, ox, g, merge);
  }
};

// Output rows [oy0, oy1) of one image: a single row, or a band of a columns-first image; `cost` estimates its
// reads and writes (of C values), to balance the threads.
struct VarlenUnit {
  int64_t image, oy0, oy1;
  double cost;
};

// Bounds of `parts` runs of consecutive units of about equal cost: at::parallel_for splits a range into equal
// counts, which leaves threads idle when units differ (a band against a row).
inline std::vector<int64_t> balanced_runs(const std::vector<VarlenUnit>& units, int64_t parts) {
  double total = 0;
  for (const VarlenUnit& u : units) total += u.cost;
  std::vector<int64_t> bounds{0};
  double done = 0;
  for (size_t i = 0; i < units.size(); ++i) {
    done += units[i].cost;
    const int64_t run = static_cast<int64_t>(bounds.size());
    if (run < parts && done >= total * static_cast<double>(run) / static_cast<double>(parts))
      bounds.push_back(static_cast<int64_t>(i) + 1);
  }
  if (bounds.back() != static_cast<int64_t>(units.size())) bounds.push_back(static_cast<int64_t>(units.size()));
  return bounds;
}

template <typename T>
struct CallPlan {
  std::map<int64_t, AxisTable<T>> ys, xs, yts, xts;  // by output size; images point into them (nodes stay put)
  std::vector<ImagePlan<T>> images;
  std::vector<VarlenUnit> units;  // image after image, rows ascending
};

constexpr int64_t kBandRows = 16;  // output rows per columns-first band

// Reads (of C values each) of one image the row by row orders take, and the columns-first one.
template <typename T>
void image_costs(const ImagePlan<T>& im, double& by_rows, double& by_columns) {
  by_rows = by_columns = 0;
  for (int64_t oy = 0; oy < im.g.h; ++oy) by_rows += im.row_reads(oy);
  for (int64_t oy0 = 0; oy0 < im.g.h; oy0 += kBandRows)
    by_columns += im.band_reads(oy0, std::min(oy0 + kBandRows, im.g.h));
}

// `with_transposed`: also the transposed tables, which the backward gathers with.
template <typename T>
void make_plan(const VarlenCall& c, CallPlan<T>& plan, bool with_transposed = false) {
  const VarlenParams& p = c.p;
  const int64_t* sizes = c.grid_sizes.const_data_ptr<int64_t>();
  const int64_t* offsets = is_padded(p) ? nullptr : c.offsets.const_data_ptr<int64_t>();
  for (int64_t b = 0; b < p.batch; ++b) {
    ImagePlan<T> im;
    im.g = VarlenImage{sizes[3 * b], sizes[3 * b + 1], sizes[3 * b + 2]};
    im.base = is_padded(p) ? b * p.max_length : offsets[b];
    auto y = plan.ys.find(im.g.h);
    if (y == plan.ys.end()) y = plan.ys.emplace(im.g.h, axis_table<T>(p.old_h, im.g.h, p)).first;
    auto x = plan.xs.find(im.g.w);
    if (x == plan.xs.end()) x = plan.xs.emplace(im.g.w, axis_table<T>(p.old_w, im.g.w, p)).first;
    im.y = &y->second;
    im.x = &x->second;
    if (with_transposed) {
      auto yt = plan.yts.find(im.g.h);
      if (yt == plan.yts.end()) yt = plan.yts.emplace(im.g.h, transposed(*im.y, p.old_h)).first;
      auto xt = plan.xts.find(im.g.w);
      if (xt == plan.xts.end()) xt = plan.xts.emplace(im.g.w, transposed(*im.x, p.old_w)).first;
      im.yt = &yt->second;
      im.xt = &xt->second;
    }
    double by_rows, by_columns;
    image_costs(im, by_rows, by_columns);
    im.columns_first = by_columns < by_rows;
    const int64_t step = im.columns_first ? kBandRows : 1;
    const double writes = static_cast<double>(im.g.w * im.g.t);
    for (int64_t oy0 = 0; oy0 < im.g.h; oy0 += step) {
      const int64_t oy1 = std::min(oy0 + step, im.g.h);
      const double reads = im.columns_first ? im.band_reads(oy0, oy1) : im.row_reads(oy0);
      plan.units.push_back({b, oy0, oy1, writes * static_cast<double>(oy1 - oy0) + reads});
    }
    plan.images.push_back(im);
  }
}

}  // namespace posext
