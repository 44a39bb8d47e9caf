"""torch.library registrations made from Python: fake (meta) kernels, so torch.compile / FakeTensor trace the
compiled ops without running them, and the autograd formulas of the differentiable ops."""
import functools

import torch

from . import _onnx_guard


def _forward_fake(name):
    """``register_fake`` of a forward op, whose fake also refuses an ONNX export that cannot translate it
    (``_onnx_guard``)."""
    def register(fake):
        @functools.wraps(fake)
        def checked(*args, **kwargs):
            if _onnx_guard.onnx_exporting():
                _onnx_guard.refuse_untranslated(name)
            return fake(*args, **kwargs)
        return torch.library.register_fake(f"posext::{name}")(checked)
    return register


def _one_device(op, what, *tensors):
    """The device rule of the C++ ops (csrc/checks.h), for calls that reach these fakes: a meta tensor among
    CPU ones dispatches here, and must be refused as the real kernel would refuse it."""
    devices = [t.device for t in tensors if t is not None]
    if any(d != devices[0] for d in devices):
        raise RuntimeError(f"posext.{op}: {what} must be on one device, got {devices[0]} and "
                           f"{next(d for d in devices if d != devices[0])}")


@_forward_fake("sincos_2d")
def _sincos_2d_fake(embed_dim, height, width, num_prefix_tokens, temperature, bands, freq_denominator_offset,
                    dtype, device):
    return torch.empty((num_prefix_tokens + height * width, embed_dim), dtype=dtype, device=device)


@_forward_fake("sincos_1d")
def _sincos_1d_fake(positions, embed_dim, temperature, dtype):
    return positions.new_empty((positions.shape[0], embed_dim), dtype=dtype)


@_forward_fake("sincos_2d_out")
def _sincos_2d_out_fake(embed_dim, height, width, num_prefix_tokens, temperature, bands,
                        freq_denominator_offset, *, out):
    return None


@_forward_fake("sincos_1d_out")
def _sincos_1d_out_fake(positions, embed_dim, temperature, *, out):
    _one_device("sincos_1d", "positions and out", positions, out)
    return None


@_forward_fake("sincos_3d")
def _sincos_3d_fake(embed_dim, depth, height, width, num_prefix_tokens, temperature, bands, scales,
                    float32_positions, dtype, device):
    return torch.empty((num_prefix_tokens + depth * height * width, embed_dim), dtype=dtype, device=device)


@_forward_fake("sincos_3d_out")
def _sincos_3d_out_fake(embed_dim, depth, height, width, num_prefix_tokens, temperature, bands, scales,
                        float32_positions, *, out):
    return None


@_forward_fake("resample")
def _resample_fake(tokens, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias, align_corners,
                   scale_h, scale_w):
    return tokens.new_empty((tokens.shape[0], num_prefix_tokens + new_h * new_w, tokens.shape[2]))


@torch.library.register_fake("posext::resample_backward")
def _resample_backward_fake(grad_out, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                            align_corners, scale_h, scale_w):
    return grad_out.new_empty((grad_out.shape[0], num_prefix_tokens + old_h * old_w, grad_out.shape[2]))


def _save_resample_args(ctx, inputs, output):
    ctx.resample_args = inputs[1:]


def _resample_grad(ctx, grad):
    # resample is linear: its backward is the transposed resampling (gathered, deterministic).
    return (torch.ops.posext.resample_backward(grad, *ctx.resample_args),) + (None,) * 10


def _resample_backward_grad(ctx, grad):
    # ... and the backward of that is the forward resampling again (double backward).
    return (torch.ops.posext.resample(grad, *ctx.resample_args),) + (None,) * 10


torch.library.register_autograd("posext::resample", _resample_grad, setup_context=_save_resample_args)
torch.library.register_autograd("posext::resample_backward", _resample_backward_grad,
                                setup_context=_save_resample_args)


@_forward_fake("resample_add")
def _resample_add_fake(x, pos_embed, old_h, old_w, new_h, new_w, num_prefix_tokens, mode, antialias,
                       align_corners, scale_h, scale_w):
    _one_device("resample_add", "x and pos_embed", x, pos_embed)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _save_resample_add_args(ctx, inputs, output):
    x, pos_embed = inputs[:2]
    ctx.resample_args = inputs[2:]
    ctx.shared_table = pos_embed.shape[0] == 1


def _resample_add_grad(ctx, grad):
    # d/dx is the identity; d/dpos_embed is the transposed resampling of the gradient, summed over the batch
    # entries that shared one table (one reduction, then one gathered resampling: deterministic).
    grad_pe = None
    if ctx.needs_input_grad[1]:
        g = grad.sum(0, keepdim=True) if ctx.shared_table else grad
        grad_pe = torch.ops.posext.resample_backward(g, *ctx.resample_args)
    return (grad if ctx.needs_input_grad[0] else None, grad_pe) + (None,) * 10


torch.library.register_autograd("posext::resample_add", _resample_add_grad,
                                setup_context=_save_resample_add_args)


@_forward_fake("rope_2d")
def _rope_2d_fake(q, k, positions, freqs, num_prefix_tokens, layout, pairs):
    _one_device("rope_2d", "q, k, positions and freqs", q, k, positions, freqs)
    return q.new_empty(q.shape), k.new_empty(k.shape)


@_forward_fake("rope_2d_")
def _rope_2d_inplace_fake(q, k, positions, freqs, num_prefix_tokens, layout, pairs):
    _one_device("rope_2d_", "q, k, positions and freqs", q, k, positions, freqs)
    return None


@torch.library.register_fake("posext::rope_2d_freqs_backward")
def _rope_2d_freqs_backward_fake(grad_q, grad_k, q, k, positions, freqs, num_prefix_tokens, layout, pairs):
    _one_device("rope_2d_freqs_backward", "gradients, q, k, positions and freqs", q, grad_q, grad_k, k,
                positions, freqs)
    return freqs.new_empty(freqs.shape)


def _save_rope_args(ctx, inputs, output):
    q, k, positions, freqs = inputs[:4]
    ctx.rope_args = inputs[4:]
    ctx.freqs_grad = freqs.requires_grad
    ctx.save_for_backward(*((q, k) if ctx.freqs_grad else (None, None)), positions, freqs)


def _rope_2d_grad(ctx, grad_q, grad_k):
    # A rotation: its backward is the rotation by the negative angle (negated frequencies), plus, for
    # learnable frequencies, dL/dfreqs summed per frequency in a fixed order (deterministic).
    q, k, positions, freqs = ctx.saved_tensors
    if grad_q is None:
        grad_q = torch.zeros_like(grad_k)
    if grad_k is None:
        grad_k = torch.zeros_like(grad_q)
    gq, gk = torch.ops.posext.rope_2d(grad_q, grad_k, positions, -freqs, *ctx.rope_args)
    gf = None
    if ctx.freqs_grad and ctx.needs_input_grad[3]:
        gf = torch.ops.posext.rope_2d_freqs_backward(grad_q, grad_k, q, k, positions, freqs, *ctx.rope_args)
    return gq, gk, None, gf, None, None, None


torch.library.register_autograd("posext::rope_2d", _rope_2d_grad, setup_context=_save_rope_args)


@_forward_fake("factorized_add")
def _factorized_add_fake(x, positions, table_y, table_x, combine):
    _one_device("factorized_add", "x, positions and tables", x, positions, table_y, table_x)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("posext::factorized_table_grads")
def _factorized_table_grads_fake(grad, positions, table_y, table_x, combine, need_y, need_x):
    _one_device("factorized_table_grads", "x, positions and tables", grad, positions, table_y, table_x)
    grad_y = grad.new_empty(table_y.shape) if need_y else grad.new_empty((0,))
    grad_x = grad.new_empty(table_x.shape) if need_x and table_x is not None else grad.new_empty((0,))
    return grad_y, grad_x


def _save_factorized(ctx, inputs, output):
    x, positions, table_y, table_x, combine = inputs
    ctx.save_for_backward(positions, table_y, table_x)
    ctx.combine = combine


def _factorized_grad(ctx, grad):
    # dL/dx is dL/dout; each table row gathers the gradients of the tokens that read it (deterministic).
    positions, table_y, table_x = ctx.saved_tensors
    need_y, need_x = ctx.needs_input_grad[2], ctx.needs_input_grad[3] and table_x is not None
    grad_y = grad_x = None
    if need_y or need_x:
        grad_y, grad_x = torch.ops.posext.factorized_table_grads(grad, positions, table_y, table_x,
                                                                 ctx.combine, need_y, need_x)
    return grad, None, grad_y if need_y else None, grad_x if need_x else None, None


torch.library.register_autograd("posext::factorized_add", _factorized_grad, setup_context=_save_factorized)


def _varlen_rows_fake(op, like, grid_sizes, offsets, channels, total_tokens, max_length):
    _one_device(op, "the tensors and grid_sizes", like, grid_sizes)
    if max_length >= 0:
        return like.new_empty((grid_sizes.shape[0], max_length, channels))
    return like.new_empty((total_tokens, channels))


@_forward_fake("resample_varlen")
def _resample_varlen_fake(table, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode, antialias,
                          align_corners, merge_size, total_tokens, max_length):
    return _varlen_rows_fake("resample_varlen", table, grid_sizes, offsets, table.shape[-1], total_tokens,
                             max_length)


@torch.library.register_fake("posext::resample_varlen_backward")
def _resample_varlen_backward_fake(grad, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode,
                                   antialias, align_corners, merge_size, max_length):
    _one_device("resample_varlen_backward", "grad and grid_sizes", grad, grid_sizes)
    return grad.new_empty((num_prefix_tokens + old_h * old_w, grad.shape[-1]))


@_forward_fake("resample_varlen_add")
def _resample_varlen_add_fake(x, table, grid_sizes, offsets, old_h, old_w, num_prefix_tokens, mode, antialias,
                              align_corners, merge_size, max_length):
    _one_device("resample_varlen_add", "x, table and grid_sizes", x, table, grid_sizes)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


# resample_varlen(table, grid_sizes, offsets, old_h, old_w, P, mode, antialias, align_corners, merge_size,
# total_tokens, max_length): the backward takes the same arguments without total_tokens.
def _save_varlen_args(ctx, inputs, output):
    ctx.index = inputs[1:3]
    ctx.varlen_args = inputs[3:10] + inputs[11:12]


def _resample_varlen_grad(ctx, grad):
    # Linear in the table: its backward is the transposed resampling, summed over the images (gathered).
    g = torch.ops.posext.resample_varlen_backward(grad, *ctx.index, *ctx.varlen_args)
    return (g,) + (None,) * 11


torch.library.register_autograd("posext::resample_varlen", _resample_varlen_grad,
                                setup_context=_save_varlen_args)


def _save_varlen_add_args(ctx, inputs, output):
    ctx.index = inputs[2:4]
    ctx.varlen_args = inputs[4:]


def _resample_varlen_add_grad(ctx, grad):
    # d/dx is the identity (padding rows included); d/dtable the transposed resampling (padding rows unread).
    grad_table = None
    if ctx.needs_input_grad[1]:
        grad_table = torch.ops.posext.resample_varlen_backward(grad, *ctx.index, *ctx.varlen_args)
    return (grad if ctx.needs_input_grad[0] else None, grad_table) + (None,) * 10


torch.library.register_autograd("posext::resample_varlen_add", _resample_varlen_add_grad,
                                setup_context=_save_varlen_add_args)
