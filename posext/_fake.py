"""Fake (meta) kernels so torch.compile / FakeTensor trace the compiled ops without running them."""
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
