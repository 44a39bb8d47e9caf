// resample_varlen / resample_varlen_backward / resample_varlen_add: argument checks and parameters, shared by every
// device. Checks of grid_sizes' values read them on the host, except for padded rows on a GPU: there a host
// read would wait for the device, so the kernel checks each image itself (a device-side assert) and lays out
// nothing it cannot.
#include "varlen_op.h"

#include <vector>

#include "checks.h"

namespace posext {
namespace {

VarlenParams make_params(const char* op, at::ScalarType dtype, int64_t channels, const at::Tensor& grid_sizes,
                         int64_t old_h, int64_t old_w, int64_t num_prefix_tokens, int64_t mode, bool antialias,
                         bool align_corners, int64_t merge_size, int64_t max_length) {
  check_float(op, "dtype", dtype);
  TORCH_CHECK(old_h > 0 && old_w > 0, op, ": old_h and old_w must be positive, got (", old_h, ", ", old_w, ")");
  TORCH_CHECK(mode >= kNearest && mode <= kBicubic, op, ": mode must be 0 (nearest), 1 (bilinear) or 2 (bicubic), got ",
              mode);
  TORCH_CHECK(!(mode == kNearest && (antialias || align_corners)), op,
              ": nearest takes neither antialias nor align_corners");
  TORCH_CHECK(num_prefix_tokens >= 0, op, ": num_prefix_tokens must be >= 0, got ", num_prefix_tokens);
  TORCH_CHECK(merge_size >= 1, op, ": merge_size must be >= 1, got ", merge_size);
  TORCH_CHECK(grid_sizes.dim() == 2 && grid_sizes.size(1) == 3, op,
              ": grid_sizes must be [B, 3] (t, h, w), got shape ", grid_sizes.sizes());
  TORCH_CHECK(grid_sizes.scalar_type() == at::kLong, op, ": grid_sizes must be int64, got ",
              grid_sizes.scalar_type());
  const int64_t grid = checked_mul(old_h, old_w, op, "old_h * old_w");
  checked_add(num_prefix_tokens, grid, op, "num_prefix_tokens + old_h * old_w");
  VarlenParams p;
  p.mode = static_cast<int>(mode);
  p.antialias = antialias;
  p.align_corners = align_corners;
  p.old_h = old_h;
  p.old_w = old_w;
  p.num_prefix_tokens = num_prefix_tokens;
  p.channels = channels;
  p.batch = grid_sizes.size(0);
  p.merge = merge_size;
  p.max_length = max_length < 0 ? -1 : max_length;
  return p;
}

void check_table(const char* op, const char* name, const at::Tensor& t, const VarlenParams& p) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == p.num_prefix_tokens + p.old_h * p.old_w, op, ": ", name, " must be [",
              p.num_prefix_tokens, " + ", p.old_h, "*", p.old_w, ", C], got shape ", t.sizes());
}

// The rows tensor (forward result, gradient or x): [rows, C] packed, [B, max_length, C] padded.
void check_rows(const char* op, const char* name, const at::Tensor& t, const VarlenParams& p, int64_t channels) {
  if (is_padded(p)) {
    TORCH_CHECK(t.dim() == 3 && t.size(0) == p.batch && t.size(1) == p.max_length && t.size(2) == channels, op, ": ",
                name, " must be padded [B=", p.batch, ", max_length=", p.max_length, ", C=", channels,
                "], got shape ", t.sizes());
  } else {
    TORCH_CHECK(t.dim() == 2 && t.size(1) == channels, op, ": ", name, " must be packed [T, C=", channels,
                "], got shape ", t.sizes());
  }
}

// grid_sizes and offsets against each other and the rows (`rows` < 0: not yet known, taken from offsets).
// Returns the packed row count (padded: batch * max_length).
int64_t check_images(const char* op, const VarlenParams& p, const at::Tensor& grid_sizes, const at::Tensor& offsets,
                     int64_t rows) {
  if (is_padded(p)) {
    const int64_t padded_rows = checked_mul(p.batch, p.max_length, op, "B * max_length");
    if (!grid_sizes.is_cpu()) return padded_rows;  // checked by the kernel, without a host sync
  } else {
    TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) == p.batch + 1, op, ": offsets must be [B + 1] = [",
                p.batch + 1, "] for grid_sizes ", grid_sizes.sizes(), ", got shape ", offsets.sizes());
    TORCH_CHECK(offsets.scalar_type() == at::kLong, op, ": offsets must be int64, got ", offsets.scalar_type());
  }
  const at::Tensor sizes = grid_sizes.to(at::kCPU).contiguous();
  const int64_t* s = sizes.const_data_ptr<int64_t>();
  at::Tensor offs;
  const int64_t* o = nullptr;
  if (!is_padded(p)) {
    offs = offsets.to(at::kCPU).contiguous();
    o = offs.const_data_ptr<int64_t>();
    TORCH_CHECK(o[0] == 0, op, ": offsets[0] must be 0, got ", o[0]);
  }
  for (int64_t b = 0; b < p.batch; ++b) {
    const VarlenImage g{s[3 * b], s[3 * b + 1], s[3 * b + 2]};
    TORCH_CHECK(g.t >= 1 && g.h >= 1 && g.w >= 1, op, ": grid_sizes must be >= 1, got (t, h, w) = (", g.t, ", ",
                g.h, ", ", g.w, ") for image ", b);
    TORCH_CHECK(g.h % p.merge == 0 && g.w % p.merge == 0, op, ": merge_size=", p.merge,
                " must divide every image's h and w, got (h, w) = (", g.h, ", ", g.w, ") for image ", b);
    const int64_t n = checked_mul(checked_mul(g.t, g.h, op, "t * h"), g.w, op, "t * h * w");
    if (is_padded(p)) {
      TORCH_CHECK(n <= p.max_length, op, ": max_length=", p.max_length, " is shorter than image ", b,
                  ": (t, h, w) = (", g.t, ", ", g.h, ", ", g.w, ") has ", n, " tokens");
    } else {
      TORCH_CHECK(o[b + 1] - o[b] == n, op, ": offsets must be the running sum of t*h*w: offsets[", b + 1,
                  "] - offsets[", b, "] = ", o[b + 1] - o[b], " but image ", b, " (t, h, w) = (", g.t, ", ", g.h,
                  ", ", g.w, ") has ", n, " tokens");
    }
  }
  if (is_padded(p)) return p.batch * p.max_length;
  const int64_t total = o[p.batch];
  TORCH_CHECK(rows < 0 || rows == total, op, ": expected ", total, " packed rows (offsets[B]), got ", rows);
  return total;
}

void check_devices(const char* op, const at::Tensor& t, const at::Tensor& grid_sizes, const at::Tensor& offsets,
                   bool packed) {
  TORCH_CHECK(grid_sizes.device() == t.device(), op, ": grid_sizes must be on the tensors' device ", t.device(),
              ", got ", grid_sizes.device());
  TORCH_CHECK(!packed || offsets.device() == t.device(), op, ": offsets must be on the tensors' device ",
              t.device(), ", got ", offsets.device());
}

void set_index_tensors(VarlenCall& c, const at::Tensor& grid_sizes, const at::Tensor& offsets) {
  c.grid_sizes = grid_sizes.contiguous();
  c.offsets = is_padded(c.p) ? at::Tensor() : offsets.contiguous();
}

}  // namespace

VarlenCall prepare_varlen(const at::Tensor& table, const at::Tensor& grid_sizes, const at::Tensor& offsets,
                          int64_t old_h, int64_t old_w, int64_t num_prefix_tokens, int64_t mode, bool antialias,
                          bool align_corners, int64_t merge_size, int64_t total_tokens, int64_t max_length) {
  const char* op = "posext.resample_varlen";
  TORCH_CHECK(table.dim() == 2, op, ": table must be 2-D [P + old_h*old_w, C], got shape ", table.sizes());
  VarlenCall c;
  c.p = make_params(op, table.scalar_type(), table.size(1), grid_sizes, old_h, old_w, num_prefix_tokens, mode,
                    antialias, align_corners, merge_size, max_length);
  check_table(op, "table", table, c.p);
  check_devices(op, table, grid_sizes, offsets, !is_padded(c.p));
  if (!is_padded(c.p))
    TORCH_CHECK(total_tokens >= 0, op, ": total_tokens must be >= 0 for packed rows, got ", total_tokens);
  c.p.rows = check_images(op, c.p, grid_sizes, offsets, is_padded(c.p) ? -1 : total_tokens);
  std::vector<int64_t> sizes = is_padded(c.p) ? std::vector<int64_t>{c.p.batch, c.p.max_length, c.p.channels}
                                              : std::vector<int64_t>{c.p.rows, c.p.channels};
  checked_numel(sizes, op);
  c.in = table.contiguous();
  c.out = at::empty(sizes, c.in.options());
  set_index_tensors(c, grid_sizes, offsets);
  return c;
}

VarlenCall prepare_varlen_backward(const at::Tensor& grad, const at::Tensor& grid_sizes, const at::Tensor& offsets,
                                   int64_t old_h, int64_t old_w, int64_t num_prefix_tokens, int64_t mode,
                                   bool antialias, bool align_corners, int64_t merge_size, int64_t max_length) {
  const char* op = "posext.resample_varlen_backward";
  TORCH_CHECK(grad.dim() == 2 || grad.dim() == 3, op, ": grad must be packed [T, C] or padded [B, max_length, C], got shape ",
              grad.sizes());
  VarlenCall c;
  c.p = make_params(op, grad.scalar_type(), grad.size(-1), grid_sizes, old_h, old_w, num_prefix_tokens, mode,
                    antialias, align_corners, merge_size, max_length);
  check_rows(op, "grad", grad, c.p, c.p.channels);
  check_devices(op, grad, grid_sizes, offsets, !is_padded(c.p));
  c.p.rows = check_images(op, c.p, grid_sizes, offsets, is_padded(c.p) ? -1 : grad.size(0));
  c.in = grad.contiguous();
  c.out = at::empty({num_prefix_tokens + old_h * old_w, c.p.channels}, c.in.options());
  set_index_tensors(c, grid_sizes, offsets);
  return c;
}

VarlenCall prepare_varlen_add(const at::Tensor& x, const at::Tensor& table, const at::Tensor& grid_sizes,
                              const at::Tensor& offsets, int64_t old_h, int64_t old_w, int64_t num_prefix_tokens,
                              int64_t mode, bool antialias, bool align_corners, int64_t merge_size,
                              int64_t max_length) {
  const char* op = "posext.resample_varlen_add";
  check_same_device(op, "x and table", {x, table});
  TORCH_CHECK(table.dim() == 2, op, ": table must be 2-D [P + old_h*old_w, C], got shape ", table.sizes());
  VarlenCall c;
  c.p = make_params(op, table.scalar_type(), table.size(1), grid_sizes, old_h, old_w, num_prefix_tokens, mode,
                    antialias, align_corners, merge_size, max_length);
  check_table(op, "table", table, c.p);
  TORCH_CHECK(x.scalar_type() == table.scalar_type(), op, ": x dtype ", x.scalar_type(), " differs from table dtype ",
              table.scalar_type());
  check_rows(op, "x", x, c.p, c.p.channels);
  check_devices(op, table, grid_sizes, offsets, !is_padded(c.p));
  c.p.rows = check_images(op, c.p, grid_sizes, offsets, is_padded(c.p) ? -1 : x.size(0));
  c.p.add = true;
  c.in = table.contiguous();
  c.addend = x.contiguous();
  c.out = at::empty(c.addend.sizes(), c.addend.options());
  set_index_tensors(c, grid_sizes, offsets);
  return c;
}

}  // namespace posext
