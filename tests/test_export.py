"""torch.export and AOTInductor of models that use posext, with dynamic image sizes: one exported program (and
one AOTInductor package, loaded in a fresh process) runs at sizes it was never traced at, native, up, down,
non-square, and equals eager posext (within 1e-6) and the unpatched model (within 1e-5). The oracles are
timm's and HF's own forward and posext's eager calls."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from posext import _backend

pytestmark = pytest.mark.skipif(_backend.backend() != "extension", reason="exports posext's compiled ops")

Dim = torch.export.Dim
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACED = (80, 48)  # pixels the programs are traced at
SIZES = [(64, 64), (80, 48), (32, 112), (160, 96), (48, 32)]  # native, traced, extreme, up, down


def posext_ops(program):
    return sorted({str(n.target) for n in program.graph.nodes
                   if n.op == "call_function" and str(n.target).startswith("posext.")})


def check_runs(program, eager, reference, make_input, sizes=SIZES):
    """program == eager (1e-6) == reference (1e-5) at every size."""
    for size in sizes:
        args = make_input(size)
        with torch.no_grad():
            got, want, ref = program.module()(*args), eager(*args), reference(*args)
        got, want, ref = (t[0] if isinstance(t, tuple) else getattr(t, "last_hidden_state", t)
                          for t in (got, want, ref))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=f"exported vs eager at {size}")
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5, msg=f"exported vs unpatched at {size}")


# ----------------------------------------------------------------------------------------------- timm

def timm_pair(**kwargs):
    """A tiny timm ViT (dynamic_img_size, 64 px native) twice: posext-accelerated and the unpatched
    original."""
    timm = pytest.importorskip("timm")
    from posext.integrations import timm as posext_timm

    torch.manual_seed(0)
    make = dict(pretrained=False, dynamic_img_size=True, depth=1, embed_dim=32, num_heads=2, img_size=64,
                num_classes=0, **kwargs)
    reference = timm.create_model("vit_tiny_patch16_224", **make).eval()
    with torch.no_grad():
        torch.nn.init.normal_(reference.pos_embed, std=0.5)
    model = timm.create_model("vit_tiny_patch16_224", **make).eval()
    model.load_state_dict(reference.state_dict())
    return posext_timm.accelerate(model), reference


def pixels(size):
    return (torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(size[0] * 1000 + size[1])),)


def export_timm(model):
    h, w = Dim("h", min=1, max=64), Dim("w", min=1, max=64)
    return torch.export.export(model, (torch.randn(2, 3, *TRACED),),
                               dynamic_shapes={"x": {2: 16 * h, 3: 16 * w}})


@pytest.mark.parametrize("kwargs", [{}, dict(reg_tokens=2), dict(reg_tokens=3, no_embed_class=True)],
                         ids=["class token", "class + registers", "registers, no_embed_class"])
def test_timm_vit_exports_once_and_runs_at_every_size(kwargs):
    model, reference = timm_pair(**kwargs)
    program = export_timm(model)
    assert posext_ops(program) == ["posext.resample_add.default"]
    check_runs(program, model, reference, pixels)


# ----------------------------------------------------------------------------------------------- HF

HF_SMALL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                image_size=64, patch_size=16)


def hf_pair(name):
    pytest.importorskip("transformers")
    import transformers

    from posext.integrations import hf as posext_hf

    model_cls, config_cls, extra = {
        "vit": ("ViTModel", "ViTConfig", {}),
        "dinov2": ("Dinov2Model", "Dinov2Config", {}),
        "dinov2_registers": ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig",
                             {"num_register_tokens": 2}),
        "siglip": ("SiglipVisionModel", "SiglipVisionConfig", {}),
    }[name]
    config = getattr(transformers, config_cls)(**HF_SMALL, **extra)
    torch.manual_seed(0)
    reference = getattr(transformers, model_cls)(config).eval()
    model = getattr(transformers, model_cls)(config).eval()
    model.load_state_dict(reference.state_dict())
    return posext_hf.accelerate(model), reference


class Interpolating(torch.nn.Module):
    """``model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state``"""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state


@pytest.mark.parametrize("name", ["vit", "dinov2", "dinov2_registers", "siglip"])
def test_hf_vision_models_export_once_and_run_at_every_size(name):
    model, reference = (Interpolating(m) for m in hf_pair(name))
    h, w = Dim("h", min=1, max=64), Dim("w", min=1, max=64)
    program = torch.export.export(model, (torch.randn(2, 3, *TRACED),),
                                  dynamic_shapes={"x": {2: 16 * h, 3: 16 * w}})
    assert posext_ops(program) == ["posext.resample.default"]
    check_runs(program, model, reference, pixels)


# ----------------------------------------------------------------------------------------------- bare ops

def test_every_op_exports_with_dynamic_sizes():
    from tests.export_cases import CASES

    for name, case in CASES.items():
        program = torch.export.export(case.module, case.make(5, 7), dynamic_shapes=case.dynamic_shapes)
        assert posext_ops(program) == [f"posext.{case.op}.default"], name
        for h, w in case.sizes:
            args = case.make(h, w)
            with torch.no_grad():
                got, want = program.module()(*args), case.module(*args)
            got, want = (t if isinstance(t, tuple) else (t,) for t in (got, want))
            for g, e in zip(got, want):
                torch.testing.assert_close(g, e, rtol=0, atol=1e-6, msg=f"{name} at {(h, w)}")
                assert g.shape == e.shape


def test_timm_native_size_still_returns_the_table_eagerly():
    """Traced, the integration resamples to the native grid (exact); eager it keeps timm's early return."""
    model, _ = timm_pair()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        patched = model.patch_embed(x)
        tokens = model._pos_embed(patched)
    expected = torch.cat([model.cls_token.expand(1, -1, -1), patched.flatten(1, 2)], 1) + model.pos_embed
    assert torch.equal(tokens, expected)


# ----------------------------------------------------------------------------------------------- AOTInductor

FRESH_PROCESS = textwrap.dedent("""
    import sys
    import torch
    if sys.argv[3] == "import":
        import posext  # registers posext's ops (their C++ kernels) in this process
    runner = torch._inductor.aoti_load_package(sys.argv[1])
    cases = torch.load(sys.argv[2])
    with torch.profiler.profile() as profile:
        for size, (x, expected) in cases.items():
            got = runner(x)
            err = (got - expected).abs().max().item()
            assert err <= 1e-5, (size, err)
    print("ran", sorted(cases), sorted({e.name for e in profile.events() if e.name.startswith("posext::")}))
""")


def test_aoti_package_runs_in_a_fresh_process_at_every_size(tmp_path):
    model, _ = timm_pair(reg_tokens=2)
    package = torch._inductor.aoti_compile_and_package(export_timm(model),
                                                       package_path=str(tmp_path / "vit.pt2"))
    sizes = [(64, 64), (80, 48), (32, 112), (160, 96)]
    with torch.no_grad():
        cases = {size: (pixels(size)[0], model(pixels(size)[0])) for size in sizes}
    torch.save(cases, tmp_path / "cases.pt")
    script = tmp_path / "run.py"
    script.write_text(FRESH_PROCESS)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run(mode):
        return subprocess.run([sys.executable, str(script), package, str(tmp_path / "cases.pt"), mode],
                              capture_output=True, text=True, env=env, timeout=300)

    done = run("import")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"ran {sorted(sizes)} ['posext::resample_add']" in done.stdout
    without = run("no-import")  # the package calls posext's kernels: it cannot run without them
    assert without.returncode != 0 and "posext::resample_add" in without.stderr
