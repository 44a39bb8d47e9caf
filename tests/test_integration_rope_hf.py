"""hf.accelerate on the vision RoPE of HF Qwen2-VL, Qwen2.5-VL (windowed) and Qwen3-VL towers and DINOv3 ViT:
patched == unpatched (outputs and gradients) within 1e-5, the fused rotation used in every block, unpatch
restores; and posext.rope_window_order against HF's window index."""
import pytest
import torch

import posext
from posext.integrations import rope_hf

transformers = pytest.importorskip("transformers")
from posext.integrations import hf as posext_hf  # noqa: E402

TOL = 1e-5
GRIDS = [[1, 8, 8], [2, 4, 12], [1, 12, 4], [1, 2, 6], [3, 16, 6], [1, 2, 2]]


@pytest.fixture
def fused_calls(monkeypatch):
    calls = []
    original = rope_hf.apply_rope

    def counted(q, k, positions, freqs, **kwargs):
        calls.append(tuple(q.shape))
        return original(q, k, positions, freqs, **kwargs)

    monkeypatch.setattr(rope_hf, "apply_rope", counted)
    return calls


def _tower(family, seed=0):
    import importlib

    torch.manual_seed(seed)
    config = importlib.import_module(f"transformers.models.{family}.configuration_{family}")
    mod = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    common = dict(depth=2, num_heads=2, patch_size=4, temporal_patch_size=2, spatial_merge_size=2,
                  in_channels=3)
    if family == "qwen2_vl":
        cfg = config.Qwen2VLVisionConfig(embed_dim=32, hidden_size=32, mlp_ratio=2, **common)
        model = mod.Qwen2VisionTransformerPretrainedModel(cfg)
    elif family == "qwen2_5_vl":
        cfg = config.Qwen2_5_VLVisionConfig(hidden_size=32, intermediate_size=64, out_hidden_size=32,
                                            window_size=16, fullatt_block_indexes=[1], **common)
        model = mod.Qwen2_5_VisionTransformerPretrainedModel(cfg)
    else:
        cfg = config.Qwen3VLVisionConfig(hidden_size=32, intermediate_size=64, out_hidden_size=32,
                                         num_position_embeddings=64, deepstack_visual_indexes=[0], **common)
        model = mod.Qwen3VLVisionModel(cfg)
    return model.eval()


def _check(model, run, calls, blocks):
    want = run()
    posext_hf.accelerate(model)
    got = run()
    assert len(calls) == blocks
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=TOL)
    posext_hf.unpatch(model)
    calls.clear()
    again = run()
    assert not calls and all(torch.equal(a, b) for a, b in zip(again, want))


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_qwen_vl_towers_patched_equal_unpatched(backend, fused_calls, family):
    pytest.importorskip(f"transformers.models.{family}.modeling_{family}")
    model = _tower(family)
    grid = torch.tensor(GRIDS)
    x = torch.randn(int(grid.prod(dim=1).sum()), 3 * 2 * 4 * 4, generator=torch.Generator().manual_seed(1))

    def run():
        model.zero_grad()
        out = model(x, grid_thw=grid)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out
        (hidden * torch.linspace(-1, 1, hidden.numel()).view_as(hidden)).sum().backward()
        return hidden.detach(), model.blocks[0].attn.qkv.weight.grad.clone()

    _check(model, run, fused_calls, blocks=2)


@pytest.mark.parametrize("training", [False, True])
def test_dinov3_patched_equals_unpatched(backend, fused_calls, training):
    config = transformers.DINOv3ViTConfig(hidden_size=64, num_attention_heads=2, intermediate_size=64,
                                          num_hidden_layers=2, patch_size=8, image_size=32,
                                          num_register_tokens=2)
    torch.manual_seed(0)
    model = transformers.DINOv3ViTModel(config).train(training)
    pixels = torch.randn(2, 3, 40, 24, generator=torch.Generator().manual_seed(2))

    def run():
        torch.manual_seed(5)  # the same coordinate augmentation in training mode
        model.zero_grad()
        hidden = model(pixels).last_hidden_state
        (hidden * torch.linspace(-1, 1, hidden.numel()).view_as(hidden)).sum().backward()
        q_proj = next(p for name, p in model.named_parameters() if name.endswith("q_proj.weight"))
        return hidden.detach(), q_proj.grad.clone()

    _check(model, run, fused_calls, blocks=2)


def test_table_pairs_still_reach_the_models_rotation():
    from transformers.models.qwen2_vl import modeling_qwen2_vl as hf

    posext_hf.accelerate(_tower("qwen2_vl"))  # installs the dispatching rotation
    q, k = torch.randn(6, 2, 8), torch.randn(6, 2, 8)
    cos, sin = torch.randn(6, 8), torch.randn(6, 8)
    original = hf.apply_rotary_pos_emb_vision.__dict__[rope_hf._REPLACED]
    assert all(torch.equal(a, b) for a, b in zip(hf.apply_rotary_pos_emb_vision(q, k, cos, sin),
                                                 original(q, k, cos, sin)))


@pytest.mark.parametrize("grid", [GRIDS, [[1, 16, 16]], [[1, 20, 2], [1, 2, 20]], [[2, 36, 18]]])
@pytest.mark.parametrize("window", [4, 8, 6])
def test_window_order_equals_hf(grid, window):
    from transformers.vision_utils import get_vision_window_index

    grid = torch.tensor(grid)
    want_index, want_cu = get_vision_window_index(grid, 2, window * 14, 14)
    token_index, cu = posext.rope_window_order(grid, merge_size=2, window_size=window)
    assert torch.equal(token_index[::4] // 4, want_index) and torch.equal(cu, want_cu)
    assert torch.equal(token_index.view(-1, 4) % 4, torch.arange(4).expand(len(want_index), 4))
    assert torch.equal(torch.sort(token_index).values, torch.arange(len(token_index)))


def test_window_order_errors_name_the_argument():
    with pytest.raises(ValueError, match="window_size"):
        posext.rope_window_order([[1, 4, 4]], merge_size=2, window_size=1)
    with pytest.raises(ValueError, match="merge_size"):
        posext.rope_window_order([[1, 3, 4]], merge_size=2, window_size=4)
    token_index, cu = posext.rope_window_order(torch.zeros(0, 3, dtype=torch.long), merge_size=2,
                                               window_size=4)
    assert token_index.shape == (0,) and cu.tolist() == [0]
