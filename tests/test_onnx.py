"""posext.onnx: models and ops exported once with dynamic image sizes, run by onnxruntime at sizes never
traced, against eager posext and F.interpolate (float32 within 1e-5, float64 within 1e-10) and the unpatched
timm / HF models. Exporting without the translations fails, saying how to export."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from posext import _backend

pytest.importorskip("onnxscript")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(_backend.backend() != "extension", reason="translates posext's compiled ops")

import posext  # noqa: E402
import posext.onnx  # noqa: E402
from tests.export_cases import CASES  # noqa: E402
from tests.test_export import HF_SMALL, Interpolating, hf_pair, pixels, timm_pair  # noqa: E402,F401

Dim = torch.export.Dim
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def session(module, args, dynamic_shapes, path):
    """Exported by posext.onnx.export, saved, checked to hold standard ONNX only, opened in onnxruntime."""
    posext.onnx.export(module.eval(), args, dynamic_shapes=dynamic_shapes).save(str(path))
    model = onnx.load(str(path))
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    assert {n.domain for n in nodes} <= {"", "pkg.onnxscript.torch_lib.common"}, {n.domain for n in nodes}
    assert "Resize" not in {n.op_type for n in nodes}
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(sess, *args):
    return [torch.from_numpy(o) for o in sess.run(None, {i.name: a.numpy() for i, a in zip(sess.get_inputs(),
                                                                                            args)})]


# ------------------------------------------------------------------------------------ resample, every mode

MODES = [(mode, antialias, align_corners) for mode in ("bicubic", "bilinear")
         for antialias in (False, True) for align_corners in (False, True)] + [("nearest", False, False)]
OLD = (6, 5)


class Grid(torch.nn.Module):
    """posext.resample of a [1, P + 6*5, C] table to the grid of ``feat`` ([1, h, w, C])."""

    def __init__(self, table, prefix, **kwargs):
        super().__init__()
        self.table, self.prefix, self.kwargs = torch.nn.Parameter(table), prefix, kwargs

    def forward(self, feat):
        return posext.resample(self.table, feat.shape[1:3], old_size=OLD, num_prefix_tokens=self.prefix,
                               **self.kwargs)


def interpolate(table, prefix, size, mode, antialias, align_corners):
    grid = table[:, prefix:].reshape(1, *OLD, -1).permute(0, 3, 1, 2).double()
    kwargs = {} if mode == "nearest" else {"align_corners": align_corners}
    out = F.interpolate(grid, size=size, mode=mode, antialias=antialias, **kwargs)
    return out.permute(0, 2, 3, 1).reshape(1, size[0] * size[1], -1)


@pytest.fixture(scope="module")
def exported_modes(tmp_path_factory):
    """One exported file per mode (dynamic h, w), float32 and float64, 0 and 3 prefix rows."""
    folder = tmp_path_factory.mktemp("modes")
    sessions = {}
    gen = torch.Generator().manual_seed(0)
    for n, (mode, antialias, align_corners) in enumerate(MODES):
        for dtype, prefix in ((torch.float32, 3), (torch.float64, 0)):
            table = torch.randn(1, prefix + OLD[0] * OLD[1], 4, generator=gen, dtype=dtype)
            module = Grid(table, prefix, mode=mode, antialias=antialias, align_corners=align_corners)
            h, w = Dim("h", min=1, max=64), Dim("w", min=1, max=64)
            sess = session(module, (torch.zeros(1, 7, 9, 1),), {"feat": {1: h, 2: w}},
                           folder / f"{n}_{dtype}.onnx")
            sessions[(mode, antialias, align_corners, dtype)] = (sess, module, table, prefix)
    return sessions


@given(size=st.tuples(st.integers(1, 24), st.integers(1, 24)))
def test_resample_every_mode_from_one_file_at_any_size(exported_modes, size):
    for (mode, antialias, align_corners, dtype), (sess, module, table, prefix) in exported_modes.items():
        (got,) = run(sess, torch.zeros(1, *size, 1))
        with torch.no_grad():
            eager = module(torch.zeros(1, *size, 1))
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        what = f"{mode} antialias={antialias} align_corners={align_corners} {dtype} at {size}"
        assert got.dtype == dtype and got.shape == eager.shape, what
        torch.testing.assert_close(got, eager, rtol=0, atol=tol, msg=what)
        torch.testing.assert_close(got[:, prefix:].double(), interpolate(table, prefix, size, mode, antialias,
                                                                         align_corners), rtol=0, atol=tol,
                                   msg=what)
        assert torch.equal(got[:, :prefix], table[:, :prefix])


@pytest.mark.parametrize("mode,antialias,align_corners",
                         [("bicubic", False, False), ("bilinear", True, False), ("nearest", False, False)])
@pytest.mark.parametrize("scale", [1.7, 0.45, 2.0])
def test_resample_scale_factor(tmp_path, mode, antialias, align_corners, scale):
    """A user scale_factor reaches the kernel as 1/sf (not in/out), as F.interpolate."""
    table = torch.randn(1, 1 + 30, 4, generator=torch.Generator().manual_seed(1))

    class Scaled(torch.nn.Module):
        def forward(self, t):
            return posext.resample(t, scale_factor=scale, old_size=OLD, mode=mode, antialias=antialias,
                                   align_corners=align_corners)

    sess = session(Scaled(), (table,), None, tmp_path / "scaled.onnx")
    (got,) = run(sess, table)
    torch.testing.assert_close(got, Scaled()(table), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_tables_computed_in_float32_and_rounded_once(tmp_path, dtype):
    table = torch.randn(1, 1 + 30, 4, generator=torch.Generator().manual_seed(2)).to(dtype)

    class AsFloat(Grid):  # the half result widened (onnxruntime hands no bfloat16 to NumPy)
        def forward(self, feat):
            return super().forward(feat).float()

    module = AsFloat(table, 1, mode="bicubic", antialias=True)
    h, w = Dim("h", min=1, max=64), Dim("w", min=1, max=64)
    sess = session(module, (torch.zeros(1, 7, 9, 1),), {"feat": {1: h, 2: w}}, tmp_path / "half.onnx")
    for size in [(6, 5), (11, 3), (2, 2)]:
        (got,) = run(sess, torch.zeros(1, *size, 1))
        with torch.no_grad():
            eager = module(torch.zeros(1, *size, 1))
        # float32 sums within 1e-6 of each other, rounded once to the half type: equal or one ulp apart
        ulp = 2 ** -7 if dtype == torch.bfloat16 else 2 ** -10
        torch.testing.assert_close(got, eager, rtol=ulp, atol=1e-6)


# ------------------------------------------------------------------------------------ models and every op

def test_timm_vit_onnx_at_every_size(tmp_path):
    model, reference = timm_pair(reg_tokens=2)
    h, w = Dim("h", min=1, max=64), Dim("w", min=1, max=64)
    sess = session(model, (torch.randn(2, 3, 80, 48),), {"x": {2: 16 * h, 3: 16 * w}}, tmp_path / "vit.onnx")
    for size in [(64, 64), (80, 48), (32, 112), (160, 96), (48, 32)]:
        (x,) = pixels(size)
        (got,) = run(sess, x)
        with torch.no_grad():
            torch.testing.assert_close(got, model(x), rtol=0, atol=1e-5, msg=str(size))
            torch.testing.assert_close(got, reference(x), rtol=0, atol=1e-5, msg=str(size))


@pytest.mark.parametrize("name", ["vit", "dinov2_registers", "siglip"])
def test_hf_vision_models_onnx_at_every_size(tmp_path, name):
    model, reference = (Interpolating(m) for m in hf_pair(name))
    h, w = Dim("h", min=1, max=64), Dim("w", min=1, max=64)
    sess = session(model, (torch.randn(2, 3, 80, 48),), {"x": {2: 16 * h, 3: 16 * w}}, tmp_path / "hf.onnx")
    for size in [(64, 64), (80, 48), (32, 112), (160, 96)]:
        (x,) = pixels(size)
        (got,) = run(sess, x)
        with torch.no_grad():
            torch.testing.assert_close(got, model(x), rtol=0, atol=1e-5, msg=str(size))
            torch.testing.assert_close(got, reference(x), rtol=0, atol=1e-5, msg=str(size))


@pytest.mark.parametrize("name", list(CASES))
def test_every_op_onnx_at_every_size(tmp_path, name):
    case = CASES[name]
    sess = session(case.module, case.make(5, 7), case.dynamic_shapes, tmp_path / "op.onnx")
    for h, w in case.sizes:
        args = case.make(h, w)
        got = run(sess, *args)
        with torch.no_grad():
            want = case.module(*args)
        for g, e in zip(got, want if isinstance(want, tuple) else (want,)):
            assert g.shape == e.shape and g.dtype == e.dtype, (name, (h, w))
            torch.testing.assert_close(g, e, rtol=0, atol=1e-5, msg=f"{name} at {(h, w)}")


def test_translation_table_covers_every_forward_op():
    table = posext.onnx.translation_table()
    ops = {"resample", "resample_add", "resample_varlen", "resample_varlen_add", "sincos_2d", "sincos_1d",
           "sincos_3d", "rope_2d", "factorized_add"}
    assert set(table) == {getattr(torch.ops.posext, name).default for name in ops}


# ------------------------------------------------------------------------------------ refusals

def test_export_without_the_translations_says_how(tmp_path):
    module = CASES["resample bicubic antialias"]
    with pytest.raises(Exception, match=r"posext.onnx.translation_table\(\)") as info:
        torch.onnx.export(module.module, module.make(5, 7), str(tmp_path / "x.onnx"), dynamo=True,
                          dynamic_shapes=module.dynamic_shapes)
    assert "posext::" in str(info.value)


def test_export_with_another_table_still_refuses(tmp_path):
    module = CASES["sincos_2d mae"]
    with pytest.raises(Exception, match=r"posext::sincos_2d has no ONNX translation"):
        torch.onnx.export(module.module, module.make(5, 7), dynamo=True, dynamic_shapes=module.dynamic_shapes,
                          custom_translation_table={torch.ops.aten.stft.default: lambda *a: None})


def test_the_fallback_is_refused_not_exported_as_resize():
    """Without the compiled ops posext's F.interpolate would become ONNX Resize with other numbers."""
    script = textwrap.dedent("""
        import torch, posext
        class M(torch.nn.Module):
            def forward(self, feat):
                return posext.resample(torch.ones(1, 37, 4), feat.shape[1:3])
        for strict in (False, True):
            torch.export.export(M(), (torch.zeros(1, 7, 9, 1),), strict=strict)  # torch.export is fine
        try:
            torch.onnx.export(M(), (torch.zeros(1, 7, 9, 1),), dynamo=True)
        except Exception as e:
            print("refused:", "need its compiled ops" in str(e))
        else:
            print("exported")
        try:
            import posext.onnx
            posext.onnx.translation_table()
        except RuntimeError as e:
            print("table:", "compiled ops" in str(e))
    """)
    path = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, POSEXT_BACKEND="python", PYTHONPATH=path)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: True" in done.stdout and "table: True" in done.stdout, done.stdout


def test_in_place_rope_is_refused_naming_the_functional_form():
    class InPlace(torch.nn.Module):
        def forward(self, q, k):
            return posext.apply_rope_2d(q.clone(), k.clone(), (4, 4), posext.rope_axial_freqs(16),
                                        num_prefix_tokens=1, inplace=True)

    q = torch.randn(1, 2, 17, 16)
    with torch.no_grad(), pytest.raises(Exception, match=r"rope_2d_ writes into its inputs.*inplace=False"):
        posext.onnx.export(InPlace(), (q, q.clone()))
