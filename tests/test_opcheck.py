"""torch.library.opcheck over every schema of bindings.cpp: schema and aliasing, fake (meta) kernels, autograd
registration, and tracing through AOT autograd with static and dynamic shapes."""
import pytest
import torch

from posext import _backend
from tests.conftest import DEVICES

pytestmark = pytest.mark.skipif(_backend.backend() != "extension", reason="extension not built")


def _samples(device):
    gen = torch.Generator().manual_seed(0)

    def t(*shape, dtype=torch.float64, grad=False):
        return torch.randn(*shape, generator=gen, dtype=dtype).to(device).requires_grad_(grad)

    ops = torch.ops.posext
    pos_rope = torch.rand(3 * 2, 2, generator=gen, dtype=torch.float64).to(device) * 3
    freqs = t(2, 1, 4, grad=True)
    q, k = t(2, 3, 1 + 6, 8, grad=True), t(2, 3, 1 + 6, 8, grad=True)
    pos_fact = torch.tensor([[-1.0, -1.0]] + [[x, y] for y in range(2) for x in range(3)],
                            dtype=torch.float64, device=device)
    bands = [0, 1, 2, 3]
    bands_3d = [0, 2, 2, 1, 2, 2, 4, 3, 3, 5, 3, 3, 2, 3, 3, 3, 3, 3]  # cogvideox, D = 16
    return [
        ("sincos_2d", ops.sincos_2d, (8, 3, 4, 1, 1e4, bands, 0, torch.float32, torch.device(device)), {}),
        ("sincos_2d_out", ops.sincos_2d_out, (8, 3, 4, 1, 1e4, bands, 0),
         {"out": torch.empty(13, 8, device=device)}),
        ("sincos_1d", ops.sincos_1d, (t(7), 8, 1e4, torch.float32), {}),
        ("sincos_1d_out", ops.sincos_1d_out, (t(7), 8, 1e4), {"out": torch.empty(7, 8, device=device)}),
        ("sincos_3d", ops.sincos_3d, (16, 2, 3, 2, 1, 1e4, bands_3d, [1.0, 1.875, 1.875], True, torch.float32,
                                      torch.device(device)), {}),
        ("sincos_3d interleaved", ops.sincos_3d, (7, 2, 3, 2, 0, 1e4, [], [1.0] * 3, False, torch.float64,
                                                  torch.device(device)), {}),
        ("sincos_3d_out", ops.sincos_3d_out, (16, 2, 3, 2, 1, 1e4, bands_3d, [1.0] * 3, False),
         {"out": torch.empty(13, 16, device=device)}),
        ("resample", ops.resample, (t(2, 1 + 16, 5, grad=True), 4, 4, 6, 3, 1, 2, True, False, 0.0, 0.0), {}),
        ("resample scale_factor", ops.resample,
         (t(2, 16, 5, grad=True), 4, 4, 6, 6, 0, 1, False, False, 1.5, 1.5), {}),
        ("resample_backward", ops.resample_backward,
         (t(2, 1 + 18, 5, grad=True), 4, 4, 6, 3, 1, 2, False, False, 0.0, 0.0), {}),
        ("resample_add", ops.resample_add,
         (t(2, 1 + 18, 5, grad=True), t(1, 1 + 16, 5, grad=True), 4, 4, 6, 3, 1, 2, False, False, 0.0, 0.0),
         {}),
        ("rope_2d", ops.rope_2d, (q, k, pos_rope, freqs, 1, 0, 0), {}),
        ("rope_2d_", ops.rope_2d_,
         (q.detach().clone(), k.detach().clone(), pos_rope, freqs.detach(), 1, 0, 1), {}),
        ("rope_2d_freqs_backward", ops.rope_2d_freqs_backward,
         (t(2, 3, 7, 8), t(2, 3, 7, 8), q.detach(), k.detach(), pos_rope, freqs.detach(), 1, 0, 0), {}),
        ("factorized_add", ops.factorized_add, (t(2, 7, 4, grad=True), pos_fact, t(2, 4, grad=True),
                                                t(3, 4, grad=True), 0), {}),
        ("factorized_add 2d", ops.factorized_add,
         (t(2, 7, 4, grad=True), pos_fact, t(2, 3, 4, grad=True), None, 2), {}),
        ("factorized_table_grads", ops.factorized_table_grads,
         (t(2, 7, 4), pos_fact, t(2, 2), t(3, 2), 1, True, True), {}),
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("index", range(len(_samples("cpu"))), ids=[s[0] for s in _samples("cpu")])
def test_opcheck(device, index):
    name, op, args, kwargs = _samples(device)[index]
    torch.library.opcheck(op, args, kwargs)
