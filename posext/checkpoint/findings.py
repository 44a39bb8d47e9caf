"""Findings: what the detector says about one key (action, layout, grid, prefix rows, family and why)."""
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

from .families import Key, StateView
from .geometry import GridRule
from .grid import (
    GridArgumentError,
    decide_grid,
    fmt_grid,
    is_square,
    mae_sincos_match,
    old_size_arg,
    prefix_arg,
    table_layout,
)

if TYPE_CHECKING:
    import torch

ACTIONS = ("resample", "regenerate_sincos", "regenerate_position_ids", "resample_video", "resample_temporal",
           "resize_rel_pos_bias", "regenerate_rel_pos_index", "resize_rel_pos", "resize_attention_biases",
           "resize_patch_embed", "resample_blocked", "drop", "skip", "unsupported")
LAYOUTS = ("tokens", "tokens_unbatched", "nhwc", "nchw", "hwio", "other")
GRID_ACTIONS = ("resample", "regenerate_sincos")


@dataclass
class Finding:
    key: str                                # key in the state dict as given (wrapper prefixes kept)
    action: str                             # one of ACTIONS
    layout: str                             # one of LAYOUTS
    old_grid: Optional[Tuple[int, int]]     # (H, W) of the stored grid, None when not a grid
    num_prefix_tokens: int                  # P rows stored in front of the grid
    family: str                             # "timm-vit", "deit-distilled", "dinov2", "mae", "open_clip", ...
    reason: str                             # one sentence: why this key, layout, P and grid (or why skipped)
    num_suffix_tokens: int = 0              # rows stored after the grid (YOLOS detection tokens)
    # image size -> grid of this tensor (from the patch-embedding kernel or the family's rule); None: unknown
    rule: Optional[GridRule] = field(default=None, repr=False)
    params: dict = field(default_factory=dict)  # action-specific values (extra rows, tubelet, table key...)

    def row(self) -> dict:
        """The finding as a JSON-friendly dict for reports (the rule as its one-line source)."""
        out = {name: getattr(self, name) for name in ("key", "action", "layout", "old_grid",
                                                       "num_prefix_tokens", "num_suffix_tokens", "family",
                                                       "reason", "params")}
        out["old_grid"] = list(self.old_grid) if self.old_grid is not None else None
        out["grid_from"] = self.rule.source if self.rule is not None else None
        return out


def skip(key, family, reason, grid=None, p=0) -> Finding:
    return Finding(key, "skip", "other", grid, p, family, reason)


def grid_finding(d: StateView, k: Key, t: "torch.Tensor", family: str, candidates, evidence: str, what: str,
                 old_size, num_prefix_tokens, allow_nhwc: bool = False, mae_by_key: bool = False,
                 layout: Optional[str] = None, num_suffix_tokens: int = 0,
                 rule: Optional[GridRule] = None) -> Finding:
    """The finding for a position table: its layout, P and grid, and whether it is MAE's fixed sin-cos
    table. ``layout`` forces one (NCHW, or token tables with leading dims); ``num_suffix_tokens`` rows
    after the grid are kept apart; ``rule`` is the table's image -> grid rule when the family sets it."""
    layout = layout or table_layout(t, allow_nhwc)
    if layout is None:
        return skip(k.raw, family, f"{what} has shape {tuple(t.shape)}, which is no [1, P+N, C], [P+N, C] or "
                                   f"NHWC position grid, so it is left alone")
    if not t.is_floating_point():
        return skip(k.raw, family, f"{what} has dtype {t.dtype}, not a floating table, so it is left alone")
    if layout in ("nhwc", "nchw"):
        grid = (int(t.shape[1]), int(t.shape[2])) if layout == "nhwc" else (int(t.shape[2]), int(t.shape[3]))
        if old_size is not None and tuple(old_size) != grid:
            raise GridArgumentError(f"{k.raw}: ", old_size_arg(old_size),
                                    f" does not match the NHWC grid {grid} of shape {tuple(t.shape)}",
                                    key=k.raw)
        if num_prefix_tokens not in (None, 0):
            raise GridArgumentError(f"{k.raw}: NHWC table {tuple(t.shape)} stores no prefix rows; got ",
                                    prefix_arg(num_prefix_tokens), key=k.raw)
        shape = "NHWC [1, H, W, C]" if layout == "nhwc" else "NCHW [1, C, H, W]"
        return Finding(k.raw, "resample", layout, grid, 0, family,
                       f"{what}: {shape} table, grid {fmt_grid(grid)} from its shape, no prefix rows",
                       rule=rule)
    rows = int(t.shape[-2]) - num_suffix_tokens
    p, grid, how = decide_grid(k.raw, t, rows, candidates, evidence, old_size, num_prefix_tokens)
    values = d.values(k.raw)
    sincos, diff = (mae_sincos_match(values, p, grid) if values is not None and not num_suffix_tokens
                    else (False, float("inf")))
    shape = "[P+N, C]" if layout == "tokens_unbatched" else f"[{', '.join(map(str, t.shape[:-2]))}, P+N, C]"
    if num_suffix_tokens:
        shape = shape.replace("P+N", "P+N+S")
    how = f"{how}, so P={p} and the stored grid is {fmt_grid(grid)} (N={grid[0] * grid[1]})"
    if num_suffix_tokens:
        how += f", then S={num_suffix_tokens} rows kept after the grid"
    if sincos:
        if family in ("timm-vit", "unknown"):
            family = "mae"
        return Finding(k.raw, "regenerate_sincos", layout, grid, p, family,
                       f"{what} {shape}: {how}; its values equal MAE's fixed sin-cos table "
                       f"(max diff {diff:.1e}), so it is rebuilt with sincos_2d at the new grid",
                       num_suffix_tokens=num_suffix_tokens, rule=rule)
    note = f"; MAE layout but not the fixed sin-cos table (max diff {diff:.1e}), so it is interpolated" \
        if mae_by_key else ""
    return Finding(k.raw, "resample", layout, grid, p, family, f"{what} {shape}: {how}{note}",
                   num_suffix_tokens=num_suffix_tokens, rule=rule)


def _is_arange(values: "torch.Tensor", rows: int) -> bool:
    import torch  # only reached with values, which only torch reads

    return torch.equal(values.reshape(-1, rows).long(),
                       torch.arange(rows, device=values.device).expand(values.numel() // rows, rows))


def position_ids_finding(d: StateView, k: Key, t: "torch.Tensor",
                         tables: Dict[str, Finding]) -> Optional[Finding]:
    """A persistent HF ``embeddings.position_ids`` buffer beside a vision table: rebuilt when it is an
    arange."""
    if k.norm[-2:] != ("embeddings", "position_ids") or k.is_text:
        return None
    table = (tables.get(k.sibling(1, "position_embedding.weight"))
             or tables.get(k.sibling(1, "position_embeddings")))
    if table is None or table.action not in GRID_ACTIONS:
        return None
    rows = table.num_prefix_tokens + table.old_grid[0] * table.old_grid[1] + table.num_suffix_tokens
    values = d.values(k.raw) if not (t.is_floating_point() or t.is_complex()) and t.dim() in (1, 2) and \
        t.shape[-1] == rows else None
    if values is None or not _is_arange(values, rows):
        return skip(k.raw, table.family,
                    f"position_ids {tuple(t.shape)} is not an arange over the {rows} rows of {table.key}, "
                    f"so it is left alone", table.old_grid, table.num_prefix_tokens)
    return Finding(k.raw, "regenerate_position_ids", "other", table.old_grid, table.num_prefix_tokens,
                   table.family, f"stale HF position_ids buffer = arange({rows}) over the rows of "
                   f"{table.key}: rebuilt as arange for the new token count",
                   num_suffix_tokens=table.num_suffix_tokens, params={"table": table.key})


def rope_finding(k: Key, t: "torch.Tensor", grids: Sequence[Tuple[int, int]], old_size) -> Optional[Finding]:
    """A persisted grid-dependent RoPE buffer ([H*W, rot_dim]): dropped, the model rebuilds it."""
    if "rope" not in k.raw.lower() or k.is_text or t.dim() < 2:
        return None
    lead = int(t.shape[0])
    known = ([tuple(old_size)] if old_size is not None else []) + list(grids)
    grid = next((g for g in known if g[0] * g[1] == lead), None)
    if grid is None and not known and lead > 1 and is_square(lead):
        grid = (math.isqrt(lead),) * 2
    if grid is None:
        return None
    return Finding(k.raw, "drop", "other", grid, 0, "eva",
                   f"grid-dependent RoPE buffer with a leading H*W = {lead} dim ({fmt_grid(grid)} grid): "
                   f"dropped, the model rebuilds it for its own grid "
                   f"(timm's EVA filter skips these keys too)")
