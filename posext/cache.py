"""PosEmbedCache: resized position embeddings kept per target grid, so that a model serving a few resolutions
resamples its position table once per resolution instead of on every forward.

An entry is keyed by the source tensor (identity and storage), its version counter, dtype, device and the
caller's key (target grid, prefix tokens, mode, ...). ``Tensor._version`` is PyTorch's in-place counter: an
optimizer step, ``load_state_dict`` (``copy_``) or any other in-place edit bumps it, so a changed parameter
never hits a stale entry; assigning a new ``.data`` changes the storage. Entries are detached, and the cache
is bounded (least recently used first out) by entry count and optionally by bytes.

The cache answers only where no gradient can flow to the source (``torch.no_grad()``, ``inference_mode``, or a
source that does not require grad) and not while torch.compile traces (a dict lookup keyed on ``_version`` is
not traceable): there ``get`` simply calls ``compute``.
"""
import threading
import weakref
from collections import OrderedDict
from typing import Callable, Hashable, NamedTuple, Optional

import torch

from . import _checks


class CacheStats(NamedTuple):
    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


class PosEmbedCache:
    """LRU cache of tensors derived from a source tensor (a position-embedding parameter).

    Args:
        max_entries: at most this many entries (>= 1); the least recently used goes first.
        max_bytes: optional bound on the summed size of the cached tensors; an entry larger than it is
            computed and returned but not kept.

    ``get(source, key, compute)`` returns ``compute(source)`` (detached when cached), from the cache when an
    entry for the same source, source version, dtype, device and ``key`` exists. ``stats()`` counts hits and
    misses (calls that could not use the cache, e.g. with gradients enabled, count as neither).
    """

    def __init__(self, max_entries: int = 8, max_bytes: Optional[int] = None):
        self.max_entries = _checks.positive_int("max_entries", max_entries)
        if max_bytes is not None:
            max_bytes = _checks.positive_int("max_bytes", max_bytes)
        self.max_bytes = max_bytes
        self._entries: "OrderedDict[tuple, tuple]" = OrderedDict()  # key -> (weakref to source, value, bytes)
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._lock = threading.Lock()

    @staticmethod
    def usable(source: torch.Tensor) -> bool:
        """True where a cached (detached) result is a correct answer: no gradient to
        ``source``, not tracing."""
        return not (torch.is_grad_enabled() and source.requires_grad) and not _compiling()

    def get(self, source: torch.Tensor, key: Hashable,
            compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if not self.usable(source):
            return compute(source)
        full_key = (id(source), source.data_ptr(), source._version, source.dtype, source.device, key)
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is not None and entry[0]() is source:
                self._entries.move_to_end(full_key)
                self._hits += 1
                return entry[1]
            self._misses += 1
        value = compute(source)
        # compute may hand back the source itself (e.g. at the native grid):
        # kept as a detached alias of no size
        size = 0 if value is source else value.numel() * value.element_size()
        value = value.detach()
        if self.max_bytes is not None and size > self.max_bytes:
            return value
        with self._lock:
            old = self._entries.pop(full_key, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[full_key] = (weakref.ref(source), value, size)
            self._bytes += size
            while (len(self._entries) > self.max_entries
                   or (self.max_bytes is not None and self._bytes > self.max_bytes)):
                self._bytes -= self._entries.popitem(last=False)[1][2]
                self._evictions += 1
        return value

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._evictions, len(self._entries), self._bytes)

    def clear(self) -> None:
        """Drops every entry (the counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        s = self.stats()
        return (f"PosEmbedCache(entries={s.entries}/{self.max_entries}, bytes={s.bytes}, hits={s.hits}, "
                f"misses={s.misses}, evictions={s.evictions})")


__all__ = ["PosEmbedCache", "CacheStats"]
