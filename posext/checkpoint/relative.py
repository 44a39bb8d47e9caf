"""Relative-position tensors whose size follows the patch grid or a window that scales with the image.

* BEiT / Data2Vec-vision ``relative_position_bias_table`` ``[(2H-1)(2W-1) + 3, heads]``: the window is the
  whole patch grid; the 3 extra rows (class-token pairs) are kept. timm's layout (``attn.`` /
  ``rel_pos_bias.``) is resized as timm's checkpoint filter does (geometric offsets); HF's
  (``relative_position_bias.``) as HF's forward does (bilinear). A persisted ``relative_position_index``
  beside a resized table is rebuilt.
* MaxViT / MaxxViT ``rel_pos.relative_position_bias_table``: partition windows of image / 32.
* Swin window tables (``layers.*``): the window is a model constant unless the new feature map is smaller
  (``hierarchical.swin_window_finding``).
* SAM ``rel_pos_h`` / ``rel_pos_w`` ``[2S-1, head_dim]``: S is the patch grid in global-attention blocks
  (resized, linear, as SAM's ``get_rel_pos``) and the window in windowed blocks (left alone).
"""
import math
from typing import Dict, Optional, Tuple

from .families import Key, StateView
from .findings import GRID_ACTIONS, Finding, skip
from .geometry import GridRule, Step
from .grid import AmbiguousGridError, fmt_grid
from .hierarchical import (
    attention_bias_finding,
    stage_window_finding,
    swin_window_finding,
    unsupported_finding,
)
from .patches import only_rule

BEIT_EXTRA_ROWS = 3
MAXVIT_PARTITION_STRIDE = 32


def _offset_window(cells: int, grid: Optional[Tuple[int, int]]) -> Optional[Tuple[int, int]]:
    """The window (h, w) with (2h-1)(2w-1) = cells: ``grid`` when it fits, else the square one."""
    if grid is not None and (2 * grid[0] - 1) * (2 * grid[1] - 1) == cells:
        return tuple(grid)
    side = math.isqrt(cells)
    if side * side == cells and side % 2 == 1:
        return ((side + 1) // 2,) * 2
    return None


class Context:
    """What the relative tensors are measured against: the model's patch grid and its rule."""

    def __init__(self, d: StateView, tables: Dict[str, Finding], old_size):
        main = next(iter(tables.values()), None)
        self.grid = tuple(old_size) if old_size is not None else (main.old_grid if main is not None else None)
        self.rule: Optional[GridRule] = main.rule if main is not None else only_rule(d)
        self.sam_grid = next((f.old_grid for f in tables.values() if f.family == "sam"), None)
        self._lengths: Dict[str, set] = {}

    def sam_lengths(self, d: StateView, name: str) -> set:
        """The row counts of every SAM ``rel_pos_h`` (or ``_w``) table in the state dict."""
        if name not in self._lengths:
            self._lengths[name] = {int(d.sd[key].shape[0]) for key in d.keys
                                   if key.endswith(name) and d.sd[key].dim() == 2}
        return self._lengths[name]


def rel_pos_bias_finding(d: StateView, k: Key, t, ctx: Context) -> Optional[Finding]:
    if k.norm[-1] != "relative_position_bias_table":
        return None
    norm = k.norm
    if "rel_pos" in norm and "stages" in norm and ("attn_block" in norm or "attn_grid" in norm):
        return _maxvit_table(k, t)
    if "layers" in norm and "blocks" in norm:
        return swin_window_finding(d, k, t, ctx.rule)
    hf = "relative_position_bias" in norm or "shared_position_bias" in norm
    beit = hf or "rel_pos_bias" in norm or ("blocks" in norm and "attn" in norm)
    if not beit or t.dim() != 2:
        return None
    rows = int(t.shape[0])
    window = _offset_window(rows - BEIT_EXTRA_ROWS, ctx.grid)
    if window is None:
        return skip(k.raw, "beit", f"relative_position_bias_table {tuple(t.shape)}: {rows} - 3 rows are no "
                                   f"(2H-1)(2W-1) offset grid of the patch grid {ctx.grid}; left alone")
    if ctx.rule is None:
        return skip(k.raw, "beit", "BEiT-style relative_position_bias_table with no patch-embedding kernel "
                                   "to tell its grid; left alone")
    method = "bilinear" if hf else "geometric"
    how = ("as HF's BEiT forward resizes it (bilinear)" if hf
           else "as timm's BEiT checkpoint filter does (geometric offsets)")
    return Finding(k.raw, "resize_rel_pos_bias", "other", window, 0, "hf-beit" if hf else "beit",
                   f"BEiT / Data2Vec relative_position_bias_table [(2H-1)(2W-1)+3, heads] over the whole "
                   f"{fmt_grid(window)} patch grid: resized {how}, the 3 class-token rows kept",
                   rule=ctx.rule, params={"extra": BEIT_EXTRA_ROWS, "method": method})


def _maxvit_table(k: Key, t) -> Optional[Finding]:
    if t.dim() == 2:
        window, layout = _offset_window(int(t.shape[0]), None), "rows"
    elif t.dim() == 3:
        cells = (int(t.shape[1]), int(t.shape[2]))
        window = ((cells[0] + 1) // 2, (cells[1] + 1) // 2) if cells[0] % 2 and cells[1] % 2 else None
        layout = "heads_2d"
    else:
        window = None
    if window is None:
        return skip(k.raw, "maxvit", f"MaxViT rel_pos table {tuple(t.shape)} is no offset grid; left alone")
    rule = GridRule((Step((MAXVIT_PARTITION_STRIDE,) * 2, (MAXVIT_PARTITION_STRIDE,) * 2),),
                    "MaxViT partitions: window = image / 32")
    return Finding(k.raw, "resize_rel_pos_bias", "other", window, 0, "maxvit",
                   f"MaxViT block / grid attention table over a {fmt_grid(window)} partition (image / 32): "
                   f"resized with the new partition as timm's checkpoint filter does (geometric offsets)",
                   rule=rule, params={"extra": 0, "table_layout": layout, "method": "geometric",
                                      "window": True})


def rel_pos_index_finding(d: StateView, k: Key, t, found: Dict[str, Finding]) -> Optional[Finding]:
    if k.norm[-1] != "relative_position_index":
        return None
    table = found.get(k.sibling(1, "relative_position_bias_table"))
    if table is None or table.action != "resize_rel_pos_bias" or t.dim() != 2:
        return None
    cells = table.old_grid[0] * table.old_grid[1]
    class_token = int(t.shape[0]) == cells + 1
    if int(t.shape[0]) not in (cells, cells + 1):
        return skip(k.raw, table.family, f"relative_position_index {tuple(t.shape)} does not index the "
                                         f"{fmt_grid(table.old_grid)} window of {table.key}; left alone")
    return Finding(k.raw, "regenerate_rel_pos_index", "other", table.old_grid, 0, table.family,
                   f"relative_position_index of {table.key}: rebuilt for the new window"
                   f"{' (with the class-token rows)' if class_token else ''}", rule=table.rule,
                   params={"class_token": class_token, "window": table.params.get("window", False)})


def sam_rel_pos_finding(d: StateView, k: Key, t, ctx: Context) -> Optional[Finding]:
    if k.norm[-1] not in ("rel_pos_h", "rel_pos_w") or t.dim() != 2 or ctx.sam_grid is None:
        return None
    axis = 0 if k.norm[-1] == "rel_pos_h" else 1
    length, side = int(t.shape[0]), ctx.sam_grid[axis]
    if ctx.sam_lengths(d, k.norm[-1]) == {2 * side - 1}:
        raise AmbiguousGridError(
            f"{k.raw}: every SAM {k.norm[-1]} has {length} rows = 2 x {side} - 1, so the attention window "
            f"equals the {side}-token grid and the global-attention blocks (whose tables follow the grid) "
            f"cannot be told from the windowed ones (whose tables do not); resize a checkpoint whose grid "
            f"differs from its window (SAM's own are 64 x 64 with 14-token windows)", key=k.raw)
    if length != 2 * side - 1:
        return skip(k.raw, "sam", f"SAM windowed-attention {k.norm[-1]} [{length}, C]: a {(length + 1) // 2}-"
                                  f"token window, a model constant; left alone")
    return Finding(k.raw, "resize_rel_pos", "other", ctx.sam_grid, 0, "sam",
                   f"SAM global-attention {k.norm[-1]} [2S-1, C] over the {side}-token grid axis: resized "
                   f"linearly to 2S'-1 rows as SAM's get_rel_pos does", rule=ctx.rule, params={"axis": axis})


def relative_findings(d: StateView, parsed: Dict[str, Key], found: Dict[str, Finding],
                      old_size) -> Dict[str, Finding]:
    """Findings for the relative-position tensors among the keys not yet found."""
    tables = {key: f for key, f in found.items() if f.action in GRID_ACTIONS}
    ctx = Context(d, tables, old_size)
    out: Dict[str, Finding] = {}
    for key in d.keys:
        if key in found:
            continue
        k, t = parsed[key], d.sd[key]
        f = (attention_bias_finding(d, k, t) or stage_window_finding(d, k, t) or unsupported_finding(d, k, t)
             or rel_pos_bias_finding(d, k, t, ctx) or sam_rel_pos_finding(d, k, t, ctx))
        if f is not None:
            out[key] = f
    for key in d.keys:
        if key not in found and key not in out:
            f = rel_pos_index_finding(d, parsed[key], d.sd[key], out)
            if f is not None:
                out[key] = f
    return out
