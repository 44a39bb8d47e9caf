#pragma once
// Variable-resolution batches: one stored grid resampled to every image's (h, w), rows packed or padded.
// The per-image index math shared by the CPU and CUDA kernels; the taps themselves are resample.h's.
//
// Layout of the rows: image b's t*h*w rows start at offsets[b] (packed) or at b * max_length (padded),
// ordered (t, h/m, w/m, m, m) with m = merge_size (m = 1: row-major), its t frames repeating its grid.
#include <cmath>
#include <cstdint>

#include "resample.h"

namespace posext {

struct VarlenParams {
  int mode = kBicubic;
  bool antialias = false;
  bool align_corners = false;
  int64_t old_h = 0, old_w = 0, num_prefix_tokens = 0, channels = 0;
  int64_t batch = 0;        // images
  int64_t merge = 1;        // merge_size
  int64_t max_length = -1;  // < 0: packed rows; else the padded row count per image
  int64_t rows = 0;         // rows of the forward result (packed: total tokens; padded: batch * max_length)
  bool add = false;         // fused add: out = x + rows (x has the result's layout)
};

struct VarlenImage {
  int64_t t = 0, h = 0, w = 0;
};

POSEXT_HD bool is_padded(const VarlenParams& p) { return p.max_length >= 0; }

// An image the kernels can lay out: sizes >= 1, m dividing h and w, and (padded) t*h*w <= max_length.
// Products are bounded by division first, so no garbage size overflows.
POSEXT_HD bool image_is_valid(const VarlenImage& g, const VarlenParams& p) {
  if (g.t < 1 || g.h < 1 || g.w < 1 || g.h % p.merge != 0 || g.w % p.merge != 0) return false;
  if (!is_padded(p)) return true;
  const int64_t L = p.max_length;
  return g.w <= L && g.h <= L / g.w && g.t <= L / (g.h * g.w);
}

POSEXT_HD int64_t image_tokens(const VarlenImage& g) { return g.t * g.h * g.w; }

// The axis of one image, as resample_op.cpp's make_axis builds it for a size= call (no user scale):
// identity, and the taps per output index of axis_max_taps<T> (resample.h) in a form a kernel can run.
template <typename T>
POSEXT_HD ResampleAxis varlen_axis(int64_t in_size, int64_t out_size, const VarlenParams& p) {
  ResampleAxis a;
  a.in_size = in_size;
  a.out_size = out_size;
  a.user_scale = 0.0;
  a.identity = axis_is_identity(a, p.mode, p.antialias, p.align_corners);
  if (a.identity) {
    a.max_taps = 1;
  } else if (!p.antialias) {
    a.max_taps = p.mode == kBicubic ? 4 : (p.mode == kBilinear ? 2 : 1);
  } else {
    const double support = static_cast<double>(aa_support<T>(p.mode, axis_scale<T>(a, p.align_corners)));
    const double cap = a.in_size + 1.0 < 1e9 ? a.in_size + 1.0 : 1e9;
    const double taps = 2.0 * ceil(support) + 1.0;
    a.max_taps = static_cast<int>(taps < cap ? taps : cap);
  }
  return a;
}

// The most taps any image's axis can have (shared-memory bound): AA windows are capped at in_size + 1.
inline int64_t varlen_taps_bound(int64_t in_size) { return in_size + 1 > 4 ? in_size + 1 : 4; }

// Local row r (< t*h*w) of an image -> its grid position (oy, ox).
POSEXT_HD void row_position(int64_t r, const VarlenImage& g, int64_t m, int64_t& oy, int64_t& ox) {
  r %= g.h * g.w;  // frames repeat the grid
  if (m == 1) {
    oy = r / g.w;
    ox = r - oy * g.w;
    return;
  }
  const int64_t block = r / (m * m), within = r - block * (m * m);
  const int64_t blocks_w = g.w / m;
  const int64_t bh = block / blocks_w, bw = block - bh * blocks_w;
  const int64_t my = within / m, mx = within - my * m;
  oy = bh * m + my;
  ox = bw * m + mx;
}

// ... and back: grid position (oy, ox) -> local row within one frame.
POSEXT_HD int64_t position_row(int64_t oy, int64_t ox, const VarlenImage& g, int64_t m) {
  if (m == 1) return oy * g.w + ox;
  const int64_t bh = oy / m, my = oy - bh * m, bw = ox / m, mx = ox - bw * m;
  return ((bh * (g.w / m) + bw) * m + my) * m + mx;
}

// Packed rows: the image holding row `row`, offsets [B + 1] ascending (the last image whose offset <= row).
POSEXT_HD int64_t image_of_row(const int64_t* offsets, int64_t batch, int64_t row) {
  int64_t lo = 0, hi = batch;  // offsets[lo] <= row < offsets[hi]
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (offsets[mid] <= row) lo = mid;
    else hi = mid;
  }
  return lo;
}

// Output row -> (image b, row within image b's slot): padded slots are max_length rows each, packed images
// start at offsets[b].
POSEXT_HD void locate_row(const VarlenParams& p, const int64_t* offsets, int64_t row, int64_t& b, int64_t& local) {
  if (is_padded(p)) {
    b = row / p.max_length;
    local = row - b * p.max_length;
  } else {
    b = image_of_row(offsets, p.batch, row);
    local = row - offsets[b];
  }
}

}  // namespace posext
