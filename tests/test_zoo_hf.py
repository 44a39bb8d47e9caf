"""Hugging Face vision families through ``resize_state_dict(sd, image_size=(H, W))``.

Each tiny model (``tests/zoo/hf_zoo.py``) is built at its native size with seeded random weights; its
state dict is resized for the new size, loaded strictly into the model built for that size and run. Keys
whose shape does not follow the image size come back bit for bit; where transformers resizes the table
at run time, posext run with the same interpolation settings gives the same output within 1e-5.
"""
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parent / "zoo"))
import hf_zoo  # noqa: E402

warnings.filterwarnings("ignore", module="transformers")


@pytest.mark.parametrize("case", hf_zoo.CASES, ids=lambda c: c.name)
def test_resize_load_forward(case):
    res = hf_zoo.run_case(case)
    assert res["error"] == "", res["error"]
    assert res["identical"], "a key whose shape does not depend on the image size was changed"
    assert res["loaded"] and res["forward"]
    if case.left_alone:
        assert res["resized"] == 0
    if case.adapter is not None:
        assert res["adapter_equal"], f"differs from transformers' run-time resizing ({case.adapter_kw})"


def _changed_keys(case):
    a = hf_zoo.build(case, case.native)[0].state_dict()
    b = hf_zoo.build(case, case.new)[0].state_dict()
    return {k for k in a if k in b and a[k].shape != b[k].shape}


@pytest.mark.parametrize(
    "name", ["vit", "clip", "siglip", "yolos", "sam_vision", "beit_rel", "vivit", "blip_vision"]
)
def test_every_grid_key_is_applied(name):
    """Each key whose shape follows the image size is among the applied findings (none is dropped)."""
    case = hf_zoo.BY_NAME[name]
    sd = hf_zoo.build(case, case.native)[0].state_dict()
    _, applied = hf_zoo.resize(case, sd, **case.adapter_kw)
    assert _changed_keys(case) <= {f.key for f in applied}


def test_mae_sincos_rebuilt_like_transformers():
    """With the default ``sincos="auto"`` the MAE table is rebuilt, equal to transformers' own table for the
    new size (not an interpolation of the old one)."""
    case = hf_zoo.BY_NAME["vit_mae"]
    sd = hf_zoo.build(case, case.native)[0].state_dict()
    new_sd, _ = hf_zoo.resize(case, sd)
    ref = hf_zoo.build(case, case.new)[0].state_dict()["embeddings.position_embeddings"]
    torch.testing.assert_close(new_sd["embeddings.position_embeddings"], ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["dinov3_vit", "siglip2_naflex", "pix2struct_vision", "swin", "swinv2"])
def test_left_alone_is_the_same_objects(name):
    case = hf_zoo.BY_NAME[name]
    sd = hf_zoo.build(case, case.native)[0].state_dict()
    new_sd, applied = hf_zoo.resize(case, sd)
    assert not [f.key for f in applied if f.action != "skip"]
    assert list(new_sd) == list(sd) and all(new_sd[k] is sd[k] for k in sd)
