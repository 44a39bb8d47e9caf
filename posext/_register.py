"""torch.library registrations made from Python: fake (meta) kernels, so torch.compile / FakeTensor trace the
compiled ops without running them, and the autograd formulas of the differentiable ops."""
import torch


@torch.library.register_fake("posext::sincos_2d")
def _sincos_2d_fake(embed_dim, height, width, num_prefix_tokens, temperature, bands, freq_denominator_offset,
                    dtype, device):
    return torch.empty((num_prefix_tokens + height * width, embed_dim), dtype=dtype, device=device)


@torch.library.register_fake("posext::sincos_1d")
def _sincos_1d_fake(positions, embed_dim, temperature, dtype):
    return positions.new_empty((positions.shape[0], embed_dim), dtype=dtype)


@torch.library.register_fake("posext::sincos_2d_out")
def _sincos_2d_out_fake(embed_dim, height, width, num_prefix_tokens, temperature, bands, freq_denominator_offset,
                        *, out):
    return None


@torch.library.register_fake("posext::sincos_1d_out")
def _sincos_1d_out_fake(positions, embed_dim, temperature, *, out):
    return None


@torch.library.register_fake("posext::resample")
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
