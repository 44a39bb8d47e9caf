"""The resample_varlen ops themselves: against the image-by-image PyTorch path, opcheck, gradcheck, a
repeatable backward and the refusals of the checked C++ call."""
import random

import pytest
import torch

from posext import _backend
from posext import varlen as V
from posext.resample import MODES
from tests.conftest import DEVICES

pytestmark = pytest.mark.skipif(_backend.backend() != "extension", reason="extension not built")

FLAGS = [("nearest", False, False), ("bilinear", False, False), ("bilinear", True, False),
         ("bilinear", False, True), ("bilinear", True, True), ("bicubic", False, False),
         ("bicubic", True, False), ("bicubic", False, True), ("bicubic", True, True)]


def _case(seed, device, dtype=torch.float64):
    rng = random.Random(seed)
    mode, aa, ac = FLAGS[seed % len(FLAGS)]
    m = rng.choice([1, 1, 2])
    prefix, oh, ow = rng.choice([0, 1, 2]), rng.randint(1, 7), rng.randint(1, 7)
    sizes = [[rng.choice([1, 1, 2]), m * rng.randint(1, 6), m * rng.randint(1, 6)]
             for _ in range(rng.randint(1, 5))]
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(prefix + oh * ow, rng.randint(1, 9), generator=gen, dtype=dtype).to(device)
    lengths = [t * h * w for t, h, w in sizes]
    max_length = max(lengths) + rng.randint(0, 3) if seed % 2 else -1
    return table, sizes, lengths, (oh, ow, prefix, mode, aa, ac, m), max_length


def _op_args(table, sizes, lengths, flags, max_length):
    oh, ow, prefix, mode, aa, ac, m = flags
    grid = torch.tensor(sizes, dtype=torch.int64, device=table.device)
    offsets = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0).tolist()), device=table.device)
    return (grid, offsets, oh, ow, prefix, MODES[mode], aa, ac, m)


def _oracle(table, sizes, lengths, flags, max_length):
    oh, ow, prefix, mode, aa, ac, m = flags
    return V._resample_varlen_torch(table[None], (oh, ow), prefix, torch.tensor(sizes), lengths, mode, aa, ac,
                                    None if max_length < 0 else max_length, m)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(36))
def test_matches_image_by_image(device, dtype, seed):
    table, sizes, lengths, flags, max_length = _case(seed, device, dtype)
    args = _op_args(table, sizes, lengths, flags, max_length)
    out = torch.ops.posext.resample_varlen(table, *args, sum(lengths), max_length)
    ref = _oracle(table, sizes, lengths, flags, max_length)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, ref, rtol=0, atol=tol)
    x = torch.randn_like(ref)
    fused = torch.ops.posext.resample_varlen_add(x, table, *args, max_length)
    torch.testing.assert_close(fused, x + ref, rtol=0, atol=2 * tol)
    grad = torch.randn_like(ref)
    t1 = table.clone().requires_grad_()
    (_oracle(t1, sizes, lengths, flags, max_length) * grad).sum().backward()
    got = torch.ops.posext.resample_varlen_backward(grad, *args, max_length)
    torch.testing.assert_close(got, t1.grad, rtol=0, atol=10 * tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", [1, 2, 5, 6, 7, 8])
def test_gradcheck(device, seed):
    table, sizes, lengths, flags, max_length = _case(seed, device)
    args = _op_args(table, sizes, lengths, flags, max_length)
    table.requires_grad_()
    torch.autograd.gradcheck(lambda t: torch.ops.posext.resample_varlen(t, *args, sum(lengths), max_length),
                             (table,))
    rows = _oracle(table.detach(), sizes, lengths, flags, max_length)
    x = torch.randn_like(rows, requires_grad=True)
    torch.autograd.gradcheck(lambda x, t: torch.ops.posext.resample_varlen_add(x, t, *args, max_length),
                             (x, table))


@pytest.mark.parametrize("device", DEVICES)
def test_backward_is_repeatable(device):
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(1 + 16 * 16, 64, generator=gen).to(device)
    sizes = [[1, 10, 14], [2, 24, 8], [1, 16, 16], [1, 6, 30]] * 4
    lengths = [t * h * w for t, h, w in sizes]
    for max_length in (-1, max(lengths)):
        args = _op_args(table, sizes, lengths, (16, 16, 1, "bicubic", True, False, 2), max_length)
        rows = torch.ops.posext.resample_varlen(table, *args, sum(lengths), max_length)
        grad = torch.randn(rows.shape, generator=gen).to(device)
        first = torch.ops.posext.resample_varlen_backward(grad, *args, max_length)
        for _ in range(3):
            assert torch.equal(torch.ops.posext.resample_varlen_backward(grad, *args, max_length), first)
        assert not first[0].any()  # the prefix row


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("max_length", [-1, 40])
def test_opcheck(device, max_length):
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(1 + 12, 5, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    sizes, lengths = [[1, 2, 4], [2, 4, 2], [1, 6, 6]], [8, 16, 36]
    args = _op_args(table, sizes, lengths, (3, 4, 1, "bicubic", True, False, 2), max_length)
    rows = (3, 40, 5) if max_length >= 0 else (60, 5)
    ops = torch.ops.posext
    torch.library.opcheck(ops.resample_varlen, (table, *args, 60, max_length))
    grad = torch.randn(rows, generator=gen, dtype=torch.float64).to(device)
    torch.library.opcheck(ops.resample_varlen_backward, (grad, *args, max_length))
    x = torch.randn(rows, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    torch.library.opcheck(ops.resample_varlen_add, (x, table, *args, max_length))


def test_refusals():
    table = torch.randn(1 + 12, 4)
    grid = torch.tensor([[1, 2, 4], [1, 3, 3]])
    offsets = torch.tensor([0, 8, 17])
    ops = torch.ops.posext

    def call(table=table, grid=grid, offsets=offsets, merge=1, total=17, max_length=-1, old=(3, 4)):
        return ops.resample_varlen(table, grid, offsets, old[0], old[1], 1, 2, False, False, merge, total,
                                   max_length)

    call()
    with pytest.raises(RuntimeError, match=r"grid_sizes must be \[B, 3\]"):
        call(grid=grid[:, :2])
    with pytest.raises(RuntimeError, match="grid_sizes must be int64"):
        call(grid=grid.int())
    with pytest.raises(RuntimeError, match="grid_sizes must be >= 1"):
        call(grid=torch.tensor([[1, 2, 4], [0, 3, 3]]))
    with pytest.raises(RuntimeError, match="merge_size=3 must divide"):
        call(merge=3)
    with pytest.raises(RuntimeError, match="max_length=10 is shorter than image 0"):
        call(grid=torch.tensor([[2, 2, 4], [1, 3, 3]]), max_length=10)
    with pytest.raises(RuntimeError, match="offsets must be the running sum"):
        call(offsets=torch.tensor([0, 9, 17]))
    with pytest.raises(RuntimeError, match=r"offsets must be \[B \+ 1\]"):
        call(offsets=offsets[:2])
    with pytest.raises(RuntimeError, match="expected 17 packed rows"):
        call(total=16)
    with pytest.raises(RuntimeError, match="table must be"):
        call(old=(4, 4))
    with pytest.raises(RuntimeError, match="dtype must be float64"):
        call(table=table.to(torch.int32))
    with pytest.raises(RuntimeError, match="old_h \\* old_w"):
        call(old=(2**62, 4))
    with pytest.raises(RuntimeError, match="grad must be padded"):
        ops.resample_varlen_backward(torch.randn(2, 9, 4), grid, offsets, 3, 4, 1, 2, False, False, 1, 10)
    with pytest.raises(RuntimeError, match="x dtype"):
        ops.resample_varlen_add(torch.randn(17, 4, dtype=torch.float64), table, grid, offsets, 3, 4, 1, 2,
                                False, False, 1, -1)
    with pytest.raises(RuntimeError, match="x must be packed"):
        ops.resample_varlen_add(torch.randn(17, 5), table, grid, offsets, 3, 4, 1, 2, False, False, 1, -1)
