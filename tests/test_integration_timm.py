"""posext.integrations.timm: patched timm ViTs match unpatched ones (eval and training), unpatch restores the
model exactly, the cache counts and invalidates, torch.compile sees no graph break. timm is the oracle."""
import pytest
import torch

timm = pytest.importorskip("timm")
from posext import _backend  # noqa: E402
from posext.integrations import timm as posext_timm  # noqa: E402
from tests.conftest import DEVICES  # noqa: E402

pytestmark = pytest.mark.usefixtures("poison_outputs")

# (model name, extra kwargs): class token; registers without embedded prefix (DINOv2-reg / DeiT-3 style);
# DeiT distillation token; no prefix token at all; EVA-02.
VARIANTS = [
    ("vit_tiny_patch16_224", {}),
    ("vit_tiny_patch16_224", dict(reg_tokens=4, no_embed_class=True)),
    ("deit_tiny_distilled_patch16_224", {}),
    ("vit_tiny_patch16_224", dict(class_token=False, global_pool="avg")),
    ("eva02_tiny_patch14_224", dict(dynamic_img_pad=True)),  # EVA-02: timm RoPE beside the table; pads to 14s
]
# native grid (timm's early return), upsample, non-square, extreme aspect
RESOLUTIONS = [(224, 224), (160, 160), (288, 192), (96, 320)]


def make_model(name, kwargs, seed=0):
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, dynamic_img_size=True, depth=2, num_classes=10,
                              **kwargs)
    with torch.no_grad():  # a structured, non-trivial table so that resampling errors would show
        torch.nn.init.normal_(model.pos_embed, std=0.5)
    return model


def images(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, h, w, generator=gen) for h, w in RESOLUTIONS]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,kwargs", VARIANTS)
def test_eval_outputs_match_unpatched_and_cache_counts(device, backend, name, kwargs):
    model = make_model(name, kwargs).eval().to(device)
    xs = [x.to(device) for x in images()]
    with torch.no_grad():
        expected = [model(x) for x in xs]
        posext_timm.accelerate(model)
        first = [model(x) for x in xs]
        second = [model(x) for x in xs]
    for e, a, b in zip(expected, first, second):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-5)
        assert torch.equal(a, b)
    (stats,) = posext_timm.cache_stats(model)
    resized = len(xs) - 1  # the native grid adds the table itself, as timm does: nothing to cache
    assert (stats.misses, stats.hits, stats.entries) == (resized, resized, resized)


@pytest.mark.parametrize("name,kwargs", VARIANTS)
def test_unpatch_restores_the_model_bitwise(backend, name, kwargs):
    model = make_model(name, kwargs).eval()
    keys_before = set(model.__dict__)
    xs = images()
    with torch.no_grad():
        before = [model(x) for x in xs]
        posext_timm.accelerate(model)
        [model(x) for x in xs]
        posext_timm.unpatch(model)
        after = [model(x) for x in xs]
    assert set(model.__dict__) == keys_before and "_pos_embed" not in model.__dict__
    assert all(torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("name,kwargs", VARIANTS[:3] + VARIANTS[4:])
def test_training_step_gradients_match(backend, name, kwargs):
    xs = images(seed=2)[:3]  # native grid, upsampled, non-square
    grads = []
    for patched in (False, True):
        model = make_model(name, kwargs).train()
        if patched:
            posext_timm.accelerate(model)
        loss = sum(model(x).square().mean() for x in xs)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        if patched:
            assert posext_timm.cache_stats(model)[0].entries == 0  # training never caches
    assert grads[0].keys() == grads[1].keys() and "pos_embed" in grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-4, atol=1e-5, msg=n)


def test_cache_invalidated_by_an_optimizer_step(backend):
    model = make_model(*VARIANTS[0])
    posext_timm.accelerate(model)
    x = images()[1]
    model.eval()
    with torch.no_grad():
        model(x)
    model.train()
    model(x).sum().backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()
    with torch.no_grad():
        patched = model(x)
        posext_timm.unpatch(model)
        plain = model(x)
    torch.testing.assert_close(patched, plain, rtol=0, atol=1e-5)


def test_shared_cache_and_idempotent_patch(backend):
    from posext import PosEmbedCache

    cache = PosEmbedCache(4)
    a, b = make_model(*VARIANTS[0], seed=0).eval(), make_model(*VARIANTS[0], seed=3).eval()
    posext_timm.accelerate(a, cache=cache)
    posext_timm.accelerate(b, cache=cache)
    posext_timm.accelerate(a, cache=cache)
    x = images()[1]
    with torch.no_grad():
        a(x), b(x), a(x)
    assert cache.stats().misses == 2 and cache.stats().hits == 1


def test_refuses_models_without_a_timm_vit():
    with pytest.raises(TypeError, match="no timm VisionTransformer / Eva"):
        posext_timm.accelerate(torch.nn.Linear(2, 2))


@pytest.mark.skipif(_backend.backend() != "extension", reason="extension not built")
def test_torch_compile_no_graph_break_and_no_extra_recompiles():
    import torch._dynamo

    xs = images()[1:]
    graphs = {}
    for patched in (False, True):
        torch._dynamo.reset()
        model = make_model(*VARIANTS[0]).eval()
        if patched:
            posext_timm.accelerate(model)
        compiled = torch.compile(model, backend="aot_eager", dynamic=True, fullgraph=True)
        torch._dynamo.utils.counters.clear()
        with torch.no_grad():
            outs = [compiled(x) for x in xs]
            eager = [model(x) for x in xs]
        for o, e in zip(outs, eager):
            torch.testing.assert_close(o, e, rtol=0, atol=1e-5)
        graphs[patched] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert 1 <= graphs[True] <= graphs[False], graphs
