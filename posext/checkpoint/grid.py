"""Grid inference: how many prefix rows P a position table stores and the H x W grid of the rest.

Errors name the arguments that settle a case. They are kept as message parts so that the library can spell
them as keyword arguments (``old_size=(H, W)``, ``num_prefix_tokens=P``) and the command line as its flags
(``--old-size HxW``, ``--prefix-tokens P``): see :meth:`GridArgumentError.render`.
"""
import math
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    import torch

GENERIC_PREFIX_COUNTS = (0, 1, 2)
SINCOS_TOLERANCE = 1e-6
# Rows of the first grid line compared before a whole table is: a learned table is told apart from MAE's
# fixed one by its first rows, so the rest of a large (possibly memory-mapped) table is never read for it.
_SINCOS_HEAD_COLUMNS = 8


class ArgumentMention:
    """A reference to the ``old_size`` or ``num_prefix_tokens`` argument inside an error message."""

    _SPELLINGS = {
        ("library", "old_size"): lambda v: "old_size=(H, W)" if v is None else f"old_size={tuple(v)}",
        ("library", "num_prefix_tokens"): lambda v: ("num_prefix_tokens=P" if v is None
                                                     else f"num_prefix_tokens={v}"),
        ("cli", "old_size"): lambda v: "--old-size HxW" if v is None else f"--old-size {v[0]}x{v[1]}",
        ("cli", "num_prefix_tokens"): lambda v: "--prefix-tokens P" if v is None else f"--prefix-tokens {v}",
        ("library", "image_size"): lambda v: "image_size=(H, W)" if v is None else f"image_size={tuple(v)}",
        ("cli", "image_size"): lambda v: "--image-size HxW" if v is None else f"--image-size {v[0]}x{v[1]}",
        ("library", "new_grid"): lambda v: "new_grid=(H, W)" if v is None else f"new_grid={tuple(v)}",
        ("cli", "new_grid"): lambda v: "--grid HxW" if v is None else f"--grid {v[0]}x{v[1]}",
        ("library", "patch_size"): lambda v: "patch_size=(P, P)" if v is None else f"patch_size={tuple(v)}",
        ("cli", "patch_size"): lambda v: "--patch-size P" if v is None else f"--patch-size {v[0]}x{v[1]}",
        ("library", "num_frames"): lambda v: "num_frames=T" if v is None else f"num_frames={v}",
        ("cli", "num_frames"): lambda v: "--frames T" if v is None else f"--frames {v}",
    }

    def __init__(self, name: str, value=None):
        self.name = name
        self.value = value

    def spell(self, spelling: str) -> str:
        return self._SPELLINGS[(spelling, self.name)](self.value)


def old_size_arg(value=None) -> ArgumentMention:
    return ArgumentMention("old_size", value)


def prefix_arg(value=None) -> ArgumentMention:
    return ArgumentMention("num_prefix_tokens", value)


class GridArgumentError(ValueError):
    """A table's grid cannot be decided from its shape and the given arguments; the message names both.

    ``str(error)`` spells the arguments as keyword arguments; ``error.render("cli")`` as command-line
    flags."""

    def __init__(self, *parts, key: Optional[str] = None, num_tokens: Optional[int] = None):
        self.parts = parts
        self.key = key
        self.num_tokens = num_tokens
        super().__init__(self.render("library"))

    def render(self, spelling: str = "library") -> str:
        return "".join(p.spell(spelling) if isinstance(p, ArgumentMention) else str(p) for p in self.parts)


class AmbiguousGridError(GridArgumentError):
    """The stored grid (P and H x W) of a table cannot be inferred; the message names the key, the token count
    and the arguments that settle it (``old_size=(H, W)``, ``num_prefix_tokens=P``)."""


def is_square(n: int) -> bool:
    return n >= 1 and math.isqrt(n) ** 2 == n


def near_square_factors(n: int, limit: int = 2) -> List[Tuple[int, int]]:
    pairs = [(h, n // h) for h in range(2, math.isqrt(n) + 1) if n % h == 0]
    pairs.sort(key=lambda hw: hw[1] / hw[0])
    return pairs[:limit]


def fmt_grid(hw) -> str:
    return f"{hw[0]}x{hw[1]}"


def table_layout(t: "torch.Tensor", allow_nhwc: bool) -> Optional[str]:
    if t.dim() == 4 and t.shape[0] == 1 and allow_nhwc:
        return "nhwc"
    if t.dim() == 3 and t.shape[0] == 1:
        return "tokens"
    if t.dim() == 2:
        return "tokens_unbatched"
    return None


def _ambiguous(key: str, shape, rows: int, why: str, candidates: Sequence[int]) -> AmbiguousGridError:
    example: list = []
    for p in candidates:
        pairs = near_square_factors(rows - p) if rows - p > 0 else []
        if pairs:
            example = [" (e.g. ", old_size_arg(pairs[0]), ", ", prefix_arg(p), ")"]
            break
    return AmbiguousGridError(
        f"{key}: cannot tell the stored grid of shape {tuple(shape)} ({rows} tokens = P + N): {why}; pass ",
        old_size_arg(), " and/or ", prefix_arg(), *example, key=key, num_tokens=rows)


def decide_grid(key: str, t: "torch.Tensor", rows: int, candidates: Optional[Sequence[int]], evidence: str,
                old_size, num_prefix_tokens) -> Tuple[int, Tuple[int, int], str]:
    """-> (P, (H, W), how they were chosen). ``candidates`` None means no family evidence."""
    cands = tuple(dict.fromkeys(candidates if candidates is not None else GENERIC_PREFIX_COUNTS))
    shape = tuple(t.shape)
    if num_prefix_tokens is not None:
        p = num_prefix_tokens
        if p >= rows:
            raise GridArgumentError(f"{key}: ", prefix_arg(p), f" leaves no grid rows in shape {shape} "
                                    f"({rows} tokens)", key=key, num_tokens=rows)
        n = rows - p
        note = "" if candidates is None or p in cands else f" (overriding the family rule: {evidence})"
        if old_size is not None:
            if old_size[0] * old_size[1] != n:
                raise GridArgumentError(f"{key}: ", old_size_arg(old_size),
                                        f" has {old_size[0] * old_size[1]} tokens but shape {shape} has "
                                        f"N = {rows} - ", prefix_arg(p), f" = {n}", key=key, num_tokens=rows)
            return p, tuple(old_size), f"explicit num_prefix_tokens={p} and old_size={tuple(old_size)}{note}"
        if not is_square(n):
            raise _ambiguous(key, shape, rows, f"with num_prefix_tokens={p}, N={n} is not a square grid",
                             (p,))
        side = math.isqrt(n)
        return p, (side, side), f"explicit num_prefix_tokens={p}{note} and a square grid"
    if old_size is not None:
        n = old_size[0] * old_size[1]
        p = rows - n
        if p < 0:
            raise GridArgumentError(f"{key}: ", old_size_arg(old_size),
                                    f" has {n} tokens, more than the {rows} rows of shape {shape}", key=key,
                                    num_tokens=rows)
        if candidates is not None and p not in cands:
            raise GridArgumentError(f"{key}: ", old_size_arg(old_size), f" leaves P={p} prefix rows in shape "
                                    f"{shape}, but {evidence} (P in {list(cands)}); pass ", prefix_arg(p),
                                    " as well to force it", key=key, num_tokens=rows)
        return p, tuple(old_size), f"explicit old_size={tuple(old_size)} leaves {p} rows ({evidence})"
    fits = [p for p in cands if is_square(rows - p)]
    if len(fits) == 1:
        p = fits[0]
        side = math.isqrt(rows - p)
        others = [q for q in cands if q != p and rows - q > 0]
        if candidates is None:
            how = f"no family evidence, and by the square rule only P={p} leaves a square grid"
        elif others:
            how = f"{evidence}, and only P={p} leaves a square grid"
        else:
            how = evidence
        return p, (side, side), how
    if not fits:
        tried = ", ".join(f"P={p}: N={rows - p}" for p in cands if rows - p > 0)
        why = (f"{evidence}, and no allowed prefix count leaves a square grid ({tried})"
               if candidates is not None
               else f"no family evidence and no square grid for P in 0..2 ({tried})")
        raise _ambiguous(key, shape, rows, why, cands)
    options = " and ".join(f"P={p} (N={rows - p} = {fmt_grid((math.isqrt(rows - p),) * 2)})" for p in fits)
    raise _ambiguous(key, shape, rows, f"{evidence}, and both {options} fit", fits)


def _matches_sincos(x: "torch.Tensor", ref: "torch.Tensor", dtype: "torch.dtype") -> Tuple[bool, float]:
    import torch

    diff = (x - ref).abs().max().item() if x.numel() else 0.0
    if diff <= SINCOS_TOLERANCE:
        return True, diff
    if dtype in (torch.float16, torch.bfloat16) and torch.equal(x, ref.to(dtype).to(torch.float64)):
        return True, 0.0
    return False, diff


def mae_sincos_match(t: "torch.Tensor", p: int, grid: Tuple[int, int]) -> Tuple[bool, float]:
    """Whether ``t`` ([.., P+N, C]) equals MAE's sin-cos table (zero prefix rows) within 1e-6, or exactly its
    cast to ``t.dtype`` (half / bf16 tables). Its rows depend only on each token's (y, x), so the first grid
    line is checked first against a one-line table; only a table that passes is compared whole."""
    c = t.shape[-1]
    if c % 4 or not t.is_floating_point() or t.numel() == 0:
        return False, float("inf")
    import torch  # values are torch tensors, and so is the reference

    from ..sincos import sincos_2d

    rows = t.detach().reshape(-1, c)
    head = min(grid[1], _SINCOS_HEAD_COLUMNS)
    head_ref = sincos_2d(c, (1, head), convention="mae", num_prefix_tokens=p, dtype=torch.float64,
                         device="cpu")
    match, diff = _matches_sincos(rows[:p + head].to("cpu", torch.float64), head_ref, t.dtype)
    if not match or grid[0] * grid[1] == head:
        return match, diff
    ref = sincos_2d(c, grid, convention="mae", num_prefix_tokens=p, dtype=torch.float64, device="cpu")
    return _matches_sincos(rows.to("cpu", torch.float64), ref, t.dtype)
