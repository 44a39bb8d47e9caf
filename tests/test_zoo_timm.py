"""The timm zoo: every architecture of ``tests/zoo/timm_cases.py`` has its native checkpoint resized with
``resize_state_dict(sd, image_size=(H, W))``; the result must load strictly into the model built at
``(H, W)``, run a finite forward there, leave unchanged-shape tensors bit-identical, and match timm's own
``checkpoint_filter_fn`` within 1e-5 wherever that adapter produces a strictly loadable dict.
"""
import pytest

timm = pytest.importorskip("timm")

import torch  # noqa: E402

from tests.zoo import timm_zoo  # noqa: E402
from tests.zoo.timm_cases import TIMM_CASES  # noqa: E402


def _fmt(diff):
    return ", ".join(f"{k}: {v:.3g}" for k, v in sorted(diff.items()))


@pytest.mark.parametrize("case", TIMM_CASES, ids=[c.id for c in TIMM_CASES])
def test_resized_checkpoint_loads_runs_and_matches_timm(case):
    if case.skip:
        pytest.skip(case.skip)
    if case.refused:
        from posext.checkpoint.geometry import GeometryError

        sd = timm_zoo.build(case.name, case.kwargs, case.native).state_dict()
        with pytest.raises(GeometryError, match="not resized by posext") as info:
            timm_zoo.resize_with_posext(sd, case.new)
        assert case.refused in str(info.value) and "image_size=" in str(info.value)
        return
    res = timm_zoo.run_case(case)
    assert res.error is None, res.error
    assert res.load_forward is True, f"strict load / forward at {case.new}: {res.load_forward}"
    assert not res.not_identical, f"same-shape tensors changed: {res.not_identical}"
    if case.control:
        assert res.resized == [], f"nothing grid-dependent to resize, but changed {res.resized}"
    if res.timm_status == "ok":
        assert not res.timm_diff, f"differs from timm's checkpoint_filter_fn (max abs): {_fmt(res.timm_diff)}"


PATCH_CASES = [("flexivit_small", {"depth": 2}, (192, 256)),
               ("vit_tiny_patch16_224", {"depth": 2}, (192, 224))]


@pytest.mark.parametrize("name,kwargs,size", PATCH_CASES, ids=[c[0] for c in PATCH_CASES])
def test_patch_size_change_matches_timm(name, kwargs, size):
    from timm.layers import resample_patch_embed

    old = timm_zoo.build(name, kwargs, None)
    sd = old.state_dict()
    new = timm_zoo.build(name, dict(kwargs, patch_size=8), size)
    new_sd, applied = timm_zoo.resize_with_posext(sd, size, patch_size=(8, 8))
    assert applied
    key = "patch_embed.proj.weight"
    ref_kernel = resample_patch_embed(sd[key], [8, 8])
    assert new_sd[key].shape == ref_kernel.shape == new.state_dict()[key].shape
    d = (new_sd[key] - ref_kernel).abs().max().item()
    assert d <= timm_zoo.ATOL * max(1.0, ref_kernel.abs().max().item()), f"kernel differs by {d}"
    new.load_state_dict(new_sd, strict=True)
    assert timm_zoo.forward_ok(new, size) is True
    ref, status = timm_zoo.timm_adapted(sd, new)
    if ref is not None:
        diff = timm_zoo.compare(new_sd, ref)
        assert not diff, f"differs from timm's checkpoint_filter_fn: {_fmt(diff)}"
    same = [k for k in sd if k != key and new_sd[k].shape == sd[k].shape
            and not torch.equal(new_sd[k], sd[k])]
    assert not same, f"same-shape tensors changed: {same}"
