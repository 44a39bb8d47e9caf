"""Inputs that once crashed, hung, returned garbage or a wrong gradient: each now ends in one clear exception
(or the right answer). Calls that could take the process down run in a subprocess with a timeout."""
import os
import subprocess
import sys

import pytest
import torch

import posext
from posext import _backend
from tests.conftest import assert_error_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_extension = pytest.mark.skipif(_backend.backend() != "extension", reason="extension not built")


def run_isolated(code, timeout=60):
    """(exit code, output) of `code` in a fresh interpreter; a signal death is a negative code."""
    result = subprocess.run([sys.executable, "-c", "import torch, posext\n" + code], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONPATH": ROOT})
    return result.returncode, result.stdout + result.stderr


@needs_extension
@pytest.mark.parametrize("call,words", [
    # old_h * old_w overflowed to 0 tokens: a kernel then read an empty tensor (SIGSEGV)
    ("torch.ops.posext.resample(torch.empty(1, 0, 8), 4, 2**62, 4, 4, 0, 0, False, False, 0., 0.)",
     ["old_h * old_w", "overflows"]),
    ("torch.ops.posext.resample_add(torch.empty(1, 0, 8), torch.empty(1, 0, 8), 4, 2**62, 4, 4, 0, 0, False,"
     " False, 0., 0.)", ["overflows"]),
    # a scale of 1e308 made the antialias window of the backward unbounded (a hang)
    ("torch.ops.posext.resample_backward(torch.randn(2, 10, 8, dtype=torch.float64), 7, 6, 10, 1, 0, 1, True,"
     " False, 1.429, 1e308)", ["scale_w", "does not map 6 to 1"]),
    ("torch.ops.posext.resample_backward(torch.randn(2, 36, 1, dtype=torch.float64), 7, 7, 4, 9, 0, 2, False,"
     " False, 0.0, 1e308)", ["scale_w"]),
])
def test_raw_ops_refuse_sizes_that_overflow_and_unbounded_windows(call, words):
    code, out = run_isolated(f"try:\n    {call}\nexcept RuntimeError as e:\n    print('refused:', e)\n",
                             timeout=60)
    assert code == 0, out
    assert "refused:" in out and all(w in out for w in words), out


def test_sizes_too_large_are_refused_at_once():
    assert_error_names(lambda: posext.resample(torch.randn(1, 1, 8), (2**32, 2**32), num_prefix_tokens=0,
                                               old_size=1), ValueError, ["new_size", "overflow"])
    assert_error_names(lambda: posext.resample(torch.randn(1, 1 + 4, 8), (2**32, 2**32)), ValueError,
                       ["new_size"])
    assert_error_names(lambda: posext.sincos_2d(8, (2**32, 2**32)), ValueError, ["grid_size", "overflow"])
    assert_error_names(lambda: posext.sincos_1d(2**62, torch.zeros(0)), ValueError, ["embed_dim", "bytes"])
    assert_error_names(lambda: posext.rope_positions_2d((2**32, 2**32)), ValueError, ["grid_size"])


@pytest.mark.parametrize("shape,old,scale", [((1, 6, 2, 8), None, (1.03, 0.586)), ((1, 9 * 7, 3), (9, 7),
                                                                                     (1.0111, 1.003))])
@pytest.mark.parametrize("mode,antialias", [("bicubic", True), ("bicubic", False), ("bilinear", True)])
def test_fallback_gradient_is_the_transposed_forward(monkeypatch, shape, old, scale, mode, antialias):
    """torch's own backward is not the transpose of its forward when a scale_factor keeps an axis's size (and
    with an output width of 1): the fallback must still pass gradcheck, as the kernels do."""
    monkeypatch.setattr(_backend, "use_extension", lambda device: False)
    t = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    kw = {} if old is None else dict(old_size=old, num_prefix_tokens=0)
    assert torch.autograd.gradcheck(lambda x: posext.resample(x, mode=mode, antialias=antialias,
                                                              scale_factor=scale, **kw), (t,))


@pytest.mark.parametrize("bad", [float("nan"), 1, None, "yes"])
def test_switches_must_be_booleans(backend, bad):
    x, pe = torch.randn(2, 1 + 9, 4).expand(2, -1, -1), torch.randn(1, 1 + 4, 4)
    assert_error_names(lambda: posext.add_pos_embed(x, pe, 3, antialias=bad), TypeError, ["antialias"])
    q = torch.randn(1, 1, 5, 8)
    with torch.no_grad():
        assert_error_names(lambda: posext.apply_rope_2d(q, q.clone(), 2, posext.rope_axial_freqs(8),
                                                        inplace=bad), TypeError, ["inplace"])


def test_inplace_rope_refuses_aliased_inputs_and_out_of_place_computes_as_unaliased(backend):
    f = posext.rope_axial_freqs(8)
    base = torch.randn(1, 2, 5, 16)
    q, k = base[..., :8], base[..., 4:12]  # overlapping channel windows of one tensor
    with torch.no_grad():
        assert_error_names(lambda: posext.apply_rope_2d(q, k, (2, 2), f, inplace=True), ValueError,
                           ["overlap"])
        expanded = torch.randn(1, 2, 5, 8).expand(3, 2, 5, 8)
        assert_error_names(lambda: posext.apply_rope_2d(expanded, torch.randn(3, 2, 5, 8), (2, 2), f,
                                                        inplace=True),
                           ValueError, ["expanded or overlapping"])
        qkv = torch.randn(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)  # slices of one fused projection: allowed
        posext.apply_rope_2d(qkv[0], qkv[1], (2, 2), f, inplace=True)
    oq, ok = posext.apply_rope_2d(q, k, (2, 2), f)
    eq, ek = posext.apply_rope_2d(q.clone(), k.clone(), (2, 2), f)
    assert torch.equal(oq, eq) and torch.equal(ok, ek)


@needs_extension
def test_raw_ops_refuse_tensors_on_two_devices():
    meta = torch.ones(1, 17, 8, device="meta")
    with pytest.raises(RuntimeError, match="one device"):
        torch.ops.posext.resample_add(torch.ones(2, 17, 8), meta, 4, 4, 4, 4, 1, 2, False, False, 0., 0.)
    q = torch.randn(1, 1, 3, 4)
    with pytest.raises(RuntimeError, match="one device"):
        torch.ops.posext.rope_2d_(q, q.clone(), torch.zeros(2, 2), torch.zeros(2, 1, 2, device="meta"), 1, 0,
                                  0)
    with pytest.raises(RuntimeError, match="one device"):
        torch.ops.posext.factorized_table_grads(torch.ones(1, 2, 3), torch.zeros(2, 2, device="meta"),
                                                torch.ones(2, 3), torch.ones(2, 3), 0, True, True)


def test_messages_that_used_to_break(backend):
    assert_error_names(lambda: posext.resample(torch.randn(1, 4, 4, 8), 6, old_size=3), ValueError,
                       ["old_size 3", "(4, 4)"])
    x, ty, tx = (torch.empty(2, 5, 4, device="meta"), torch.empty(3, 4, device="meta"),
                 torch.empty(3, 4, device="meta"))
    out = posext.factorized_pos_embed(x, ty, tx, coords=torch.empty(5, 2, device="meta"))  # no values to read
    assert out.shape == x.shape and out.device.type == "meta"


@needs_extension
def test_frequency_gradient_is_bitwise_repeatable():
    gen = torch.Generator().manual_seed(3)
    for heads, hf, prefix, layout, pairs in [(3, 1, 1, 0, 0), (3, 3, 0, 1, 1), (2, 2, 2, 0, 1),
                                             (4, 1, 0, 1, 0)]:
        shape = (2, heads, prefix + 12, 8) if layout == 0 else (2, prefix + 12, heads, 8)
        args = [torch.randn(shape, generator=gen) for _ in range(4)]
        pos, f = torch.rand(12, 2, generator=gen) * 4, torch.randn(2, hf, 4, generator=gen)
        first = torch.ops.posext.rope_2d_freqs_backward(*args, pos, f, prefix, layout, pairs)
        again = torch.ops.posext.rope_2d_freqs_backward(*args, pos, f, prefix, layout, pairs)
        assert torch.equal(first.view(torch.int32), again.view(torch.int32))
