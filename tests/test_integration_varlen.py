"""Variable-resolution towers patched onto ``posext.resample_varlen``: HF SigLIP2 and Qwen3-VL
(``hf.accelerate``), timm NaFlexViT (``timm.accelerate``), each a tiny randomly initialised model built
offline. Patched forward and training gradients equal the unpatched ones; the patch really goes through
``resample_varlen``; ``unpatch`` restores the model; patching twice is a no-op."""
import pytest
import torch

from posext.integrations import varlen_hf, varlen_timm

pytestmark = pytest.mark.usefixtures("poison_outputs")

TOL = 1e-5


def max_diffs(a, b):
    return [float((x - y).abs().max()) for x, y in zip(a, b)]


def weighted_loss(out):
    return (out.square() * torch.linspace(0, 1, out.numel()).view_as(out)).mean()


@pytest.fixture
def varlen_calls(monkeypatch):
    """Counts the resample_varlen calls made by the patched methods."""
    calls = []
    for module in (varlen_hf, varlen_timm):
        real = module.resample_varlen

        def counted(*args, _real=real, **kwargs):
            calls.append(kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "resample_varlen", counted)
    return calls


def check_patch(model, run, accelerate, unpatch, varlen_calls, **accelerate_kwargs):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = run()
    accelerate(model, **accelerate_kwargs)
    accelerate(model, **accelerate_kwargs)  # idempotent
    varlen_calls.clear()
    patched = run()
    assert len(varlen_calls) == 1
    diffs = max_diffs(reference, patched)
    assert max(diffs) < TOL, diffs
    unpatch(model)
    assert not any("_posext_patched" in m.__dict__ for m in model.modules())
    assert max_diffs(reference, run()) == [0.0] * len(reference)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return diffs


# -------------------------------------------------------------------------------------------------- HF

transformers = pytest.importorskip("transformers")
from posext.integrations import hf as posext_hf  # noqa: E402


def siglip2_case(shapes, max_length, seed=0):
    from transformers import Siglip2VisionConfig, Siglip2VisionModel

    torch.manual_seed(seed)
    cfg = Siglip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, num_patches=64, patch_size=4, num_channels=3)
    model = Siglip2VisionModel(cfg).eval()
    shapes = torch.tensor(shapes)
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randn(len(shapes), max_length, 3 * 4 * 4, generator=gen)
    mask = torch.zeros(len(shapes), max_length, dtype=torch.long)
    for i, (h, w) in enumerate(shapes.tolist()):
        mask[i, : h * w] = 1
    embeds = model.vision_model.embeddings if hasattr(model, "vision_model") else next(
        m for m in model.modules() if type(m).__name__ == "Siglip2VisionEmbeddings")

    def run():
        model.zero_grad()
        out = model(pixel_values=pixels, pixel_attention_mask=mask, spatial_shapes=shapes).last_hidden_state
        weighted_loss(out).backward()
        return (out.detach(), embeds.position_embedding.weight.grad.clone(),
                embeds.patch_embedding.weight.grad.clone())

    return model, run


def test_siglip2_patched_equals_unpatched(varlen_calls):
    # native, up, down, non-square both ways, one image filling max_length exactly, 1 x n
    shapes = [[8, 8], [12, 12], [3, 5], [4, 12], [16, 6], [10, 10], [1, 9]]
    model, run = siglip2_case(shapes, max_length=144)
    check_patch(model, run, posext_hf.accelerate, posext_hf.unpatch, varlen_calls)
    call = varlen_calls[0]
    assert (call["mode"], call["antialias"], call["align_corners"], call["max_length"]) == (
        "bilinear", True, False, 144)


def test_siglip2_padding_rows_repeat_first_row():
    from transformers.models.siglip2.modeling_siglip2 import Siglip2VisionEmbeddings

    table = torch.randn(8, 8, 16)
    shapes = torch.tensor([[3, 5], [8, 8], [2, 2]])
    reference = Siglip2VisionEmbeddings.resize_positional_embeddings(table, shapes, max_length=70)
    patched = varlen_hf._siglip2_resize(None, table, shapes, 70)
    assert float((reference - patched).abs().max()) < TOL


def qwen3_vl_case(grid, seed=0):
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLVisionConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    torch.manual_seed(seed)
    cfg = Qwen3VLVisionConfig(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                              patch_size=4, temporal_patch_size=2, spatial_merge_size=2,
                              num_position_embeddings=64, deepstack_visual_indexes=[0], in_channels=3)
    model = Qwen3VLVisionModel(cfg).eval()
    grid = torch.tensor(grid)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(int(grid.prod(dim=1).sum()), 3 * 2 * 4 * 4, generator=gen)

    def run():
        model.zero_grad()
        out = model(x, grid_thw=grid)
        weighted_loss(out.last_hidden_state).backward()
        return (out.last_hidden_state.detach(), out.pooler_output.detach(),
                model.pos_embed.weight.grad.clone(), model.patch_embed.proj.weight.grad.clone())

    return model, run


def test_qwen3_vl_patched_equals_unpatched(varlen_calls):
    pytest.importorskip("transformers.models.qwen3_vl.modeling_qwen3_vl")
    grid = [[1, 8, 8], [2, 4, 12], [1, 12, 4], [1, 2, 6], [3, 16, 6], [1, 2, 2]]
    model, run = qwen3_vl_case(grid)
    check_patch(model, run, posext_hf.accelerate, posext_hf.unpatch, varlen_calls)
    call = varlen_calls[0]
    assert (call["mode"], call["align_corners"], call["merge_size"]) == ("bilinear", True, 2)
    assert "forward" not in model.pos_embed.__dict__  # the gather table stand-in is gone after forward


def test_hf_model_without_supported_modules_is_refused():
    with pytest.raises(TypeError, match="found no HF"):
        posext_hf.accelerate(torch.nn.Sequential(torch.nn.Linear(2, 2)))


# ------------------------------------------------------------------------------------------------ timm

timm = pytest.importorskip("timm")
from posext.integrations import timm as posext_timm  # noqa: E402

NAFLEX_SIZES = ((4, 4), (3, 5), (2, 7), (6, 2), (5, 5), (16, 16), (20, 3), (1, 1))


def naflex_batch(sizes=NAFLEX_SIZES, patch=16, length=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    length = length or max(h * w for h, w in sizes) + 3
    patches = torch.zeros(len(sizes), length, patch * patch * 3)
    coord = torch.zeros(len(sizes), length, 2, dtype=torch.long)
    valid = torch.zeros(len(sizes), length, dtype=torch.bool)
    for i, (h, w) in enumerate(sizes):
        n = h * w
        patches[i, :n] = torch.randn(n, patch * patch * 3, generator=gen)
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        coord[i, :n] = torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1)
        valid[i, :n] = True
    return dict(patches=patches, patch_coord=coord, patch_valid=valid)


def naflex_case(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = timm.create_model("naflexvit_base_patch16_gap", pretrained=False, embed_dim=64, depth=1,
                              num_heads=2, num_classes=10, **kwargs).eval()
    batch = naflex_batch()

    def run():
        model.zero_grad()
        out = model(batch)
        weighted_loss(out).backward()
        return out.detach(), model.embeds.pos_embed.grad.clone(), model.embeds.proj.weight.grad.clone()

    return model, run


NAFLEX_VARIANTS = [{}, {"pos_embed_ar_preserving": True}, {"pos_embed_interp_mode": "bilinear"}]


@pytest.mark.parametrize("kwargs", NAFLEX_VARIANTS, ids=["bicubic", "ar_preserving", "bilinear"])
def test_naflex_patched_equals_unpatched(kwargs, varlen_calls):
    model, run = naflex_case(**kwargs)
    check_patch(model, run, posext_timm.accelerate, posext_timm.unpatch, varlen_calls)


def test_naflex_grid_sample_route_kept_unless_asked(varlen_calls):
    model, run = naflex_case(pos_embed_use_grid_sample=True)
    reference = run()
    posext_timm.accelerate(model)
    assert max_diffs(reference, run()) == [0.0] * 3 and not varlen_calls  # timm's grid_sample, untouched
    posext_timm.unpatch(model)


def test_naflex_exact_equals_interpolate_route(varlen_calls):
    """naflex_exact: the grid_sample model gets the interpolate route's (antialiased) rows."""
    for ar in (False, True):
        model, run = naflex_case(pos_embed_use_grid_sample=True, pos_embed_ar_preserving=ar)
        sampled = run()
        model.embeds.pos_embed_use_grid_sample = False
        interpolated = run()
        model.embeds.pos_embed_use_grid_sample = True
        posext_timm.accelerate(model, naflex_exact=True)
        exact = run()
        assert max(max_diffs(interpolated, exact)) < TOL
        assert max(max_diffs(sampled, exact)) > 1e-3  # antialiasing changes downsized grids by design
        posext_timm.unpatch(model)
        assert max_diffs(sampled, run()) == [0.0] * 3
