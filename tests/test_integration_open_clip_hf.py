"""posext.integrations.open_clip and .hf on small randomly initialised models built offline.

open_clip: a patched tower at a new resolution must equal open_clip's own route to that resolution (a tower
built for it, loaded with the checkpoint rewritten by ``open_clip.resize_pos_embed``); at the native size it
must equal the unpatched tower. HF: patched ``forward(..., interpolate_pos_encoding=True)`` must equal the
unpatched one at every resolution. Both: training gradients match, the cache counts, ``unpatch`` restores the
model bitwise."""
import types

import pytest
import torch

pytestmark = pytest.mark.usefixtures("poison_outputs")

RESOLUTIONS = [(64, 64), (96, 96), (80, 48), (32, 112)]  # native, up, non-square, extreme aspect


def pixels(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, h, w, generator=gen) for h, w in RESOLUTIONS]


# ------------------------------------------------------------------------------------------------ open_clip

pytest.importorskip("open_clip")
import open_clip.model  # noqa: E402
from open_clip.transformer import VisionTransformer  # noqa: E402

from posext.integrations import hf as posext_hf  # noqa: E402
from posext.integrations import open_clip as posext_oc  # noqa: E402

TOWER = dict(patch_size=16, width=32, layers=2, heads=2, mlp_ratio=2.0, output_dim=16)


def tower(image_size, seed=0):
    torch.manual_seed(seed)
    return VisionTransformer(image_size=image_size, **TOWER).eval()


def open_clip_route(model, image_size):
    """open_clip's own way to a new resolution: a tower built for it + its checkpoint-resizing function."""
    target = tower(image_size, seed=123)
    state = {"visual." + k: v.clone() for k, v in model.state_dict().items()}
    open_clip.model.resize_pos_embed(state, types.SimpleNamespace(visual=target))
    target.load_state_dict({k[len("visual."):]: v for k, v in state.items()})
    return target.eval()


def test_open_clip_matches_its_own_resize_route(backend):
    model = tower(64)
    xs = pixels()
    with torch.no_grad():
        expected = [open_clip_route(model, x.shape[-2:])(x) if x.shape[-2:] != (64, 64) else model(x)
                    for x in xs]
        posext_oc.accelerate(model)
        got = [model(x) for x in xs]
        again = [model(x) for x in xs]
    for e, g, a in zip(expected, got, again):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)
        assert torch.equal(g, a)
    stats = model._posext_cache.stats()
    assert (stats.misses, stats.hits) == (len(xs) - 1, len(xs) - 1)


def test_open_clip_training_gradients_and_unpatch(backend):
    x = pixels(seed=3)[2]
    model = tower(64).train()
    reference = open_clip_route(model, x.shape[-2:]).train()
    reference(x).square().sum().backward()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    posext_oc.accelerate(model)
    model(x).square().sum().backward()
    grads = dict(model.named_parameters())
    for name, p in reference.named_parameters():
        if name == "positional_embedding":
            continue  # a different (resized) parameter in the reference tower
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    assert grads["positional_embedding"].grad is not None and model._posext_cache.stats().entries == 0
    posext_oc.unpatch(model)
    assert "_embeds" not in model.__dict__ and "_posext_cache" not in model.__dict__
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(RuntimeError):  # unpatched open_clip cannot run at another size
        model(x)


def test_open_clip_positional_gradient_matches_resize_route(backend):
    """d loss / d positional_embedding through the fused add = the chain rule through open_clip's resize."""
    x = pixels(seed=4)[1]
    model = tower(64).train()
    posext_oc.accelerate(model)
    model(x).sum().backward()
    fused = model.positional_embedding.grad.clone()
    posext_oc.unpatch(model)
    model.zero_grad()
    table = model.positional_embedding
    resized = posext_oc._resize(table, (6, 6), (4, 4))
    target = open_clip_route(model, (96, 96)).train()
    target.positional_embedding = torch.nn.Parameter(resized.detach().clone())
    target(x).sum().backward()
    (expected,) = torch.autograd.grad(resized, table, target.positional_embedding.grad)
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-5)


def test_open_clip_refuses_other_models():
    with pytest.raises(TypeError, match="open_clip VisionTransformer"):
        posext_oc.accelerate(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------------ HF

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=64,
             patch_size=16)


def hf_models():
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        Dinov2Config,
        Dinov2Model,
        SiglipVisionConfig,
        SiglipVisionModel,
        ViTConfig,
        ViTModel,
    )

    models = [("vit", ViTModel, ViTConfig(**SMALL)), ("clip", CLIPVisionModel, CLIPVisionConfig(**SMALL)),
              ("siglip", SiglipVisionModel, SiglipVisionConfig(**SMALL)),
              ("dinov2", Dinov2Model, Dinov2Config(**SMALL))]
    try:
        from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel
        models.append(("dinov2_reg", Dinov2WithRegistersModel,
                       Dinov2WithRegistersConfig(num_register_tokens=4, **SMALL)))
    except ImportError:
        pass
    return models


HF_NAMES = ["vit", "clip", "siglip", "dinov2", "dinov2_reg"]


def build_hf(name, seed=0):
    matches = [(cls, cfg) for n, cls, cfg in hf_models() if n == name]
    if not matches:
        pytest.skip(f"transformers without {name}")
    cls, cfg = matches[0]
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "position_embedding" in pname:
                torch.nn.init.normal_(p, std=0.5)
    return model


def last_hidden(model, x):
    return model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state


@pytest.mark.parametrize("name", HF_NAMES)
def test_hf_matches_unpatched_and_unpatch_is_exact(backend, name):
    model = build_hf(name)
    xs = pixels(seed=5)
    with torch.no_grad():
        expected = [last_hidden(model, x) for x in xs]
        posext_hf.accelerate(model)
        got = [last_hidden(model, x) for x in xs]
        again = [last_hidden(model, x) for x in xs]
        posext_hf.unpatch(model)
        after = [last_hidden(model, x) for x in xs]
    for e, g, a, u in zip(expected, got, again, after):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5)
        assert torch.equal(g, a) and torch.equal(u, e)
    assert not any("_posext" in k for m in model.modules() for k in m.__dict__)


@pytest.mark.parametrize("name", HF_NAMES)
def test_hf_training_gradients_match(backend, name):
    xs = pixels(seed=6)[1:3]
    grads = []
    for patched in (False, True):
        model = build_hf(name).train()
        if patched:
            posext_hf.accelerate(model)
        sum(last_hidden(model, x).square().mean() for x in xs).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert any("position_embedding" in n for n in grads[0])
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-4, atol=1e-5, msg=n)


def test_hf_cache_counts(backend):
    model = build_hf("vit")
    posext_hf.accelerate(model)
    xs = pixels(seed=7)
    with torch.no_grad():
        for x in xs + xs:
            last_hidden(model, x)
    (embeddings,) = [m for m in model.modules() if "_posext_cache" in m.__dict__]
    stats = embeddings._posext_cache.stats()
    assert (stats.misses, stats.hits, stats.entries) == (3, 3, 3)  # the native size never reaches the cache


def test_hf_refuses_other_models():
    with pytest.raises(TypeError, match="HF ViT"):
        posext_hf.accelerate(torch.nn.Linear(2, 2))


@pytest.mark.skipif(not __import__("posext")._backend.backend() == "extension", reason="extension not built")
@pytest.mark.parametrize("family", ["open_clip", "vit", "dinov2_reg"])
def test_torch_compile_fullgraph_dynamic(family):
    import torch._dynamo

    torch._dynamo.reset()
    if family == "open_clip":
        model = tower(64)
        posext_oc.accelerate(model)
        run = model
    else:
        model = build_hf(family)
        posext_hf.accelerate(model)
        run = lambda x: last_hidden(model, x)  # noqa: E731
    compiled = torch.compile(run, backend="aot_eager", dynamic=True, fullgraph=True)
    with torch.no_grad():
        for x in pixels(seed=8)[1:]:
            torch.testing.assert_close(compiled(x), run(x), rtol=0, atol=1e-5)
