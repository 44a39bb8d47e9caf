"""posext's RoPE recipes for model families, against each family's own code (HF transformers, random inputs):
DINOv3's normalised axial RoPE (rows on the first frequency slots, prefix tokens unrotated) and the Qwen2-VL /
Qwen2.5-VL / Qwen3-VL vision towers' axial RoPE over merge-ordered (h, w) positions of packed images and
videos. Within 1e-5 in float32; positions exactly equal."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import posext
from tests.conftest import DEVICES

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("poison_outputs")

GRIDS = [(4, 4), (3, 7), (8, 2), (1, 1)]


def _qk(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("grid", GRIDS)
def test_dinov3_rope_matches_hf(device, backend, grid):
    from transformers.models.dinov3_vit import modeling_dinov3_vit as hf

    config = transformers.DINOv3ViTConfig(hidden_size=128, num_attention_heads=2, patch_size=16,
                                          image_size=64, num_register_tokens=4)
    head_dim, prefix = 64, 1 + config.num_register_tokens
    rope = hf.DINOv3ViTRopePositionEmbedding(config).eval()
    cos, sin = rope(torch.zeros(1, 3, 16 * grid[0], 16 * grid[1]))
    q, k = _qk((2, 2, prefix + grid[0] * grid[1], head_dim), seed=sum(grid))
    want_q, want_k = hf.apply_rotary_pos_emb(q, k, cos, sin)
    freqs = posext.rope_axial_freqs(head_dim, theta=config.rope_theta, scale=2 * math.pi, first_axis="y",
                                    device=device)
    positions = posext.rope_positions_2d(grid, mode="normalized", device=device)
    got_q, got_k = posext.apply_rope_2d(q.to(device), k.to(device), positions, freqs,
                                        num_prefix_tokens=prefix, pair_layout="half")
    torch.testing.assert_close(got_q.cpu(), want_q, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_k.cpu(), want_k, rtol=0, atol=1e-5)


def test_the_x_first_recipe_is_not_dinov3():
    """The axes matter: x on the first slots (RoPE-ViT's order) gives other numbers than DINOv3's."""
    from transformers.models.dinov3_vit import modeling_dinov3_vit as hf

    config = transformers.DINOv3ViTConfig(hidden_size=128, num_attention_heads=2, patch_size=16,
                                          image_size=64)
    cos, sin = hf.DINOv3ViTRopePositionEmbedding(config)(torch.zeros(1, 3, 48, 80))
    q, k = _qk((1, 2, 1 + 4 + 15, 64), seed=0)
    want, _ = hf.apply_rotary_pos_emb(q, k, cos, sin)
    freqs = posext.rope_axial_freqs(64, theta=config.rope_theta, scale=2 * math.pi)
    got, _ = posext.apply_rope_2d(q, k, posext.rope_positions_2d((3, 5), mode="normalized"), freqs,
                                  num_prefix_tokens=5, pair_layout="half")
    assert (got - want).abs().max() > 1e-2


# one image; images and a video of two frames; a video of three frames
QWEN_GRIDS = [[(1, 4, 6)], [(1, 2, 2), (2, 6, 4), (1, 8, 2)], [(3, 2, 10)]]


CLASSES = {"qwen2_vl": "Qwen2VL", "qwen2_5_vl": "Qwen2_5_VL", "qwen3_vl": "Qwen3VL"}


def _qwen(name):
    """(modeling module, vision config class, vision rotary class) of one Qwen-VL family."""
    import importlib

    mod = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
    config = importlib.import_module(f"transformers.models.{name}.configuration_{name}")
    prefix = CLASSES[name]
    return mod, getattr(config, f"{prefix}VisionConfig"), getattr(mod, f"{prefix}VisionRotaryEmbedding")


@pytest.mark.parametrize("grid_thw", QWEN_GRIDS, ids=["image", "images and video", "video"])
def test_qwen_vl_positions_equal_hf(grid_thw):
    from transformers.vision_utils import get_vision_position_ids

    want = get_vision_position_ids(torch.tensor(grid_thw), 2)  # (h, w) per token
    got = posext.rope_positions(grid_thw, merge_size=2, dtype=torch.int64)
    assert torch.equal(got, want.flip(1))  # posext's columns are (x, y)
    assert torch.equal(posext.rope_positions(torch.tensor(grid_thw), merge_size=1),
                       get_vision_position_ids(torch.tensor(grid_thw), 1).flip(1).float())


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("grid_thw", QWEN_GRIDS, ids=["image", "images and video", "video"])
def test_qwen_vl_vision_rope_matches_hf(backend, name, grid_thw):
    from transformers.vision_utils import get_vision_position_ids

    mod, config_cls, rotary_cls = _qwen(name)
    config = config_cls(hidden_size=256, embed_dim=256, num_heads=4, depth=1, spatial_merge_size=2)
    rotary = rotary_cls(config)
    head_dim = 4 * rotary.inv_freq.numel()  # D/4 frequencies per axis
    ids = get_vision_position_ids(torch.tensor(grid_thw), 2)
    cos, sin = rotary(torch.zeros(1), ids)
    q, k = _qk((len(ids), 4, head_dim), seed=len(ids))
    want_q, want_k = mod.apply_rotary_pos_emb_vision(q, k, cos, sin)
    freqs = posext.rope_axial_freqs(head_dim, theta=config.rope_parameters["rope_theta"], first_axis="y")
    positions = posext.rope_positions(grid_thw, merge_size=2)
    got_q, got_k = posext.apply_rope_2d(q[None], k[None], positions, freqs, layout="bnhd", pair_layout="half")
    torch.testing.assert_close(got_q[0], want_q, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_k[0], want_k, rtol=0, atol=1e-5)


def test_rope_positions_refuses_bad_sizes():
    with pytest.raises(ValueError, match="merge_size=2 must divide"):
        posext.rope_positions([(1, 3, 4)], merge_size=2)
    with pytest.raises(ValueError, match="grid_sizes must be >= 1"):
        posext.rope_positions([(0, 4)])
    with pytest.raises(ValueError, match="first_axis"):
        posext.rope_axial_freqs(8, first_axis="z")
    assert posext.rope_positions(torch.zeros(0, 3, dtype=torch.long)).shape == (0, 2)


@given(grids=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)), max_size=5),
       merge=st.sampled_from([1, 2, 3]))
def test_rope_positions_equal_a_loop_over_images(grids, merge):
    grids = [(t, h * merge, w * merge) for t, h, w in grids]
    expected = []
    for t, h, w in grids:  # row-major cells, each merge x merge block kept together, frames repeated
        for _ in range(t):
            for by in range(h // merge):
                for bx in range(w // merge):
                    for iy in range(merge):
                        for ix in range(merge):
                            expected.append([bx * merge + ix, by * merge + iy])
    got = posext.rope_positions(grids if grids else torch.zeros(0, 3, dtype=torch.long), merge_size=merge,
                                dtype=torch.int64)
    assert got.tolist() == expected
