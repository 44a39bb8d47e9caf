"""PosEmbedCache: hits and misses, invalidation on parameter change, LRU bounds, where it must not answer."""
import pytest
import torch

from posext import PosEmbedCache

pytestmark = pytest.mark.usefixtures("poison_outputs")


def doubled(counter):
    def compute(t):
        counter.append(1)
        return t * 2
    return compute


def test_hit_after_miss_returns_the_same_tensor():
    cache, calls = PosEmbedCache(4), []
    p = torch.nn.Parameter(torch.randn(3, 4))
    with torch.no_grad():
        a = cache.get(p, "k", doubled(calls))
        b = cache.get(p, "k", doubled(calls))
    assert a is b and len(calls) == 1 and not a.requires_grad
    torch.testing.assert_close(a, p.detach() * 2, rtol=0, atol=0)
    s = cache.stats()
    assert (s.hits, s.misses, s.entries, s.bytes) == (1, 1, 1, 12 * 4)


def test_keys_dtype_and_source_are_separate_entries():
    cache, calls = PosEmbedCache(8), []
    p, q = torch.randn(3, 4), torch.randn(3, 4)
    cache.get(p, "a", doubled(calls))
    cache.get(p, "b", doubled(calls))
    cache.get(q, "a", doubled(calls))
    cache.get(p.double(), "a", doubled(calls))
    assert len(calls) == 4 and len(cache) == 4


@pytest.mark.parametrize("change", ["optimizer", "copy_", "data"])
def test_parameter_update_invalidates(change):
    cache, calls = PosEmbedCache(4), []
    p = torch.nn.Parameter(torch.randn(3, 4))
    with torch.no_grad():
        before = cache.get(p, "k", doubled(calls))
    if change == "optimizer":
        p.grad = torch.ones_like(p)
        torch.optim.SGD([p], lr=0.5).step()
    elif change == "copy_":
        with torch.no_grad():
            p.copy_(torch.zeros_like(p))
    else:
        p.data = torch.full_like(p, 3.0)
    with torch.no_grad():
        after = cache.get(p, "k", doubled(calls))
    assert len(calls) == 2
    torch.testing.assert_close(after, p.detach() * 2, rtol=0, atol=0)
    assert not torch.equal(before, after)


def test_lru_bound_by_entries_evicts_least_recent():
    cache, calls = PosEmbedCache(2), []
    p = torch.randn(2)
    cache.get(p, 1, doubled(calls))
    cache.get(p, 2, doubled(calls))
    cache.get(p, 1, doubled(calls))  # 1 is now the most recent
    cache.get(p, 3, doubled(calls))  # evicts 2
    assert len(cache) == 2 and cache.stats().evictions == 1
    cache.get(p, 1, doubled(calls))
    assert len(calls) == 3
    cache.get(p, 2, doubled(calls))
    assert len(calls) == 4


def test_byte_bound():
    cache, calls = PosEmbedCache(100, max_bytes=100), []
    p = torch.randn(10)  # 40 bytes per result
    for key in range(5):
        cache.get(p, key, doubled(calls))
    s = cache.stats()
    assert s.entries == 2 and s.bytes == 80 and s.evictions == 3
    big = torch.randn(100)  # 400 bytes: computed, not kept
    out = cache.get(big, "big", doubled(calls))
    assert torch.equal(out, big * 2) and cache.stats().entries == 2


def test_not_used_when_gradients_flow_to_the_source():
    cache, calls = PosEmbedCache(4), []
    p = torch.nn.Parameter(torch.randn(3))
    a = cache.get(p, "k", doubled(calls))
    b = cache.get(p, "k", doubled(calls))
    assert a.requires_grad and b.requires_grad and len(calls) == 2 and len(cache) == 0
    assert cache.stats().hits == cache.stats().misses == 0
    with torch.inference_mode():
        cache.get(p, "k", doubled(calls))
        cache.get(p, "k", doubled(calls))
    assert len(calls) == 3 and cache.stats().hits == 1


def test_source_returned_unchanged_is_kept_without_bytes():
    cache = PosEmbedCache(4)
    p = torch.randn(5)
    with torch.no_grad():
        a = cache.get(p, "same", lambda t: t)
        b = cache.get(p, "same", lambda t: t)
    assert a is b and a.data_ptr() == p.data_ptr() and cache.stats().bytes == 0 and cache.stats().hits == 1


def test_another_tensor_on_the_same_storage_is_not_a_hit():
    cache, calls = PosEmbedCache(4), []
    p = torch.randn(4)
    cache.get(p, "k", doubled(calls))
    q = p.view(4)  # same storage, address and version; another tensor object
    cache.get(q, "k", doubled(calls))
    assert len(calls) == 2


def test_clear_and_bad_arguments():
    cache = PosEmbedCache(2)
    cache.get(torch.randn(2), "k", lambda t: t * 2)
    cache.clear()
    assert len(cache) == 0 and cache.stats().bytes == 0
    with pytest.raises(ValueError, match="max_entries"):
        PosEmbedCache(0)
    with pytest.raises(ValueError, match="max_bytes"):
        PosEmbedCache(2, max_bytes=-1)
