"""Resize every grid-dependent tensor of a flat state dict: plan once from all keys, apply to any part.

``plan_resize(state_dict, ...)`` finds the tensors (:func:`find_position_embeddings`) and decides each one's
new size from the target (``geometry.py``); ``plan.apply(part)`` resizes the keys of ``part`` it acts on.
A sharded checkpoint is planned from the shapes of all its shards and applied shard by shard.
"""
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Tuple

from .._modes import MODES
from .detect import Finding, find_position_embeddings
from .findings import GRID_ACTIONS
from .geometry import GeometryError, Target, arg, image_of, new_grid

SINCOS_POLICIES = ("auto", "interpolate")
# Actions whose new size is the tensor's own grid under the target.
_GRID_SIZED = GRID_ACTIONS + ("resize_rel_pos_bias", "regenerate_rel_pos_index", "resize_rel_pos",
                              "resize_attention_biases", "resample_blocked", "drop")


@dataclass
class Change:
    """What happens to one key: its finding and its new size (grid (H, W), (T, H, W) for video tables,
    the kernel for a patch embedding)."""

    finding: Finding
    new: Tuple[int, ...]


def _new_mapping(state_dict: Mapping):
    """An empty mapping of the input's kind (dict / OrderedDict, keeping torch's ``_metadata``)."""
    out = OrderedDict() if isinstance(state_dict, OrderedDict) else {}
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata  # load_state_dict reads per-module versions from it
    return out


class Plan:
    """The findings of a state dict and the change each one gets under ``target``."""

    reads_shape_only = True  # apply() reads the values it needs from a shape-only part itself

    def __init__(self, findings: List[Finding], target: Target, options: dict):
        self.findings = findings
        self.options = options
        self.changes: Dict[str, Change] = {}
        self.target = _grid_target(findings, target)
        grids = {}
        for f in findings:
            new = self._new_size(f)
            if new is not None:
                self.changes[f.key] = Change(f, new)
                if f.action in GRID_ACTIONS or f.action == "resample_video":
                    grids[f.key] = new
        for f in findings:  # position_ids follow their table
            if f.action == "regenerate_position_ids" and f.params.get("table") in grids:
                self.changes[f.key] = Change(f, grids[f.params["table"]])

    def _new_size(self, f: Finding) -> Optional[Tuple[int, ...]]:
        t = self.target
        if f.action in ("skip", "regenerate_position_ids"):
            return None
        if f.action == "unsupported":
            if t.grid is not None or t.image_size is not None or t.patch_size is not None:
                raise GeometryError(f"{f.key}: {f.reason}; this checkpoint cannot be resized to ",
                                    arg("image_size", t.image_size) if t.image_size is not None
                                    else arg("new_grid", t.grid) if t.grid is not None
                                    else arg("patch_size", t.patch_size), key=f.key)
            return None
        if f.action == "resize_patch_embed":
            return t.patch_size if t.patch_size is not None and t.patch_size != f.old_grid else None
        if f.action in ("resample_video", "resample_temporal"):
            frames, tubelet = f.params["frames"], f.params.get("tubelet", 1)
            new_frames = t.num_frames // tubelet if t.num_frames is not None else frames
            if t.num_frames is not None and new_frames < 1:
                raise GeometryError(f"{f.key}: ", arg("num_frames", t.num_frames),
                                    f" is fewer than the tubelet of {tubelet} frames", key=f.key)
            if f.action == "resample_temporal":
                return (new_frames,) if new_frames != frames else None
            grid = new_grid(f.key, f.rule, f.old_grid, t)
            new = (new_frames,) + tuple(grid)
            return new if new != (frames,) + tuple(f.old_grid) else None
        if f.params.get("runtime_resized") and t.grid is None:
            return None  # sized by the model's own setting, not by the image
        if f.action in _GRID_SIZED:
            grid = new_grid(f.key, f.rule, f.old_grid, t)
            return grid if grid != tuple(f.old_grid) else None
        raise AssertionError(f"no size rule for action {f.action}")

    def apply(self, part: Mapping) -> Tuple[dict, List[Finding]]:
        """``part`` (any keys of the planned state dict, with values, or ``meta`` tensors of a mapping with
        ``read_tensor``) resized: a new mapping in the same key order, every key not acted on the very input
        object; and the findings applied."""
        import torch  # planning needs no torch; resizing does

        from .apply import EXECUTORS

        out = _new_mapping(part)
        applied: List[Finding] = []
        with torch.no_grad():
            for key, value in part.items():
                change = self.changes.get(key) if isinstance(key, str) else None
                if change is None:
                    out[key] = value
                    continue
                f = change.finding
                applied.append(f)
                if f.action == "drop":
                    continue
                if value.is_meta and hasattr(part, "read_tensor"):  # a shape-only part: read this one
                    value = part.read_tensor(key)
                out[key] = EXECUTORS[f.action](value, f, change.new, self.options)
        return out, applied


def _grid_target(findings: List[Finding], target: Target) -> Target:
    """A single grid fits every table only when they all follow the same patch grid. The image size it
    stands for (grid x patch, when that patch grid is plain) then sizes the windows and later stages too."""
    if target.grid is None:
        return target
    ruled = [f for f in findings if f.action in GRID_ACTIONS + ("resample_video",) and f.rule is not None]
    first = ruled[0] if ruled else None
    for f in ruled[1:]:
        if f.rule.steps != first.rule.steps:
            raise GeometryError(f"{first.key} ({first.rule.source}) and {f.key} ({f.rule.source}) have "
                                f"different grids, so one ", arg("new_grid"), " cannot fit both; pass ",
                                arg("image_size"), key=f.key)
    kernels = {f.old_grid for f in findings if f.action == "resize_patch_embed"}
    image = (image_of(first.rule, target.grid) if first is not None
             else tuple(g * k for g, k in zip(target.grid, kernels.pop())) if len(kernels) == 1 else None)
    if image is not None:
        return replace(target, image_size=image)
    for f in findings:  # without a patch grid to stand for, a grid fits only plain patch-grid tensors
        if f.action in ("skip", "unsupported") or f.rule is None or image_of(f.rule, (1, 1)) is not None:
            continue
        what = ("its window follows the image size" if f.params.get("window")
                else "its grid is not the patch grid")
        raise GeometryError(f"{f.key}: {what} ({f.rule.source}); pass ", arg("image_size"), " instead of ",
                            arg("new_grid"), key=f.key)
    return target


def plan_resize(state_dict: Mapping, new_grid=None, *, image_size=None, patch_size=None, num_frames=None,
                mode: str = "bicubic", antialias: bool = True, old_size=None, num_prefix_tokens=None,
                sincos: str = "auto") -> Plan:
    """The :class:`Plan` for ``state_dict`` (values, or ``meta`` shapes with ``read_tensor``): see
    :func:`resize_state_dict` for the arguments."""
    target = Target.of(new_grid, image_size, patch_size, num_frames)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if sincos not in SINCOS_POLICIES:
        raise ValueError(f"sincos must be one of {SINCOS_POLICIES}, got {sincos!r}")
    findings = find_position_embeddings(state_dict, old_size=old_size, num_prefix_tokens=num_prefix_tokens)
    if sincos == "interpolate":
        findings = [replace(f, action="resample", reason=f"{f.reason} (sincos='interpolate': resampled "
                                                         f"instead)")
                    if f.action == "regenerate_sincos" else f for f in findings]
    return Plan(findings, target, dict(mode=mode, antialias=bool(antialias) and mode != "nearest"))


def resize_state_dict(state_dict: Mapping, new_grid=None, *, image_size=None, patch_size=None,
                      num_frames=None, mode: str = "bicubic", antialias: bool = True, old_size=None,
                      num_prefix_tokens=None, sincos: str = "auto") -> Tuple[dict, List[Finding]]:
    """Resize every grid-dependent tensor of ``state_dict`` for a new patch grid or image size.

    Give one of:

    * ``new_grid=(H, W)`` (or ``n``): every position table gets that patch grid (the tables must share one
      grid rule: a model whose branches or stages have different grids needs ``image_size``);
    * ``image_size=(H, W)``: each tensor's new size follows from its own patch-embedding kernel (or its
      family's rule: hybrid backbones, overlapping patches, per-stage attention biases, windows);
    * ``patch_size=(p, p)``, alone or with ``image_size``: a new patch size; the patch-embedding kernels
      are resized with FlexiViT's pseudo-inverse resize and the grids follow;
    * ``num_frames=T``: a new input frame count for video tables (with or without a new image size).

    Returns ``(new_dict, applied)``: a new mapping in the same key order where every key not acted on is
    the very input tensor object, and the findings applied. Learned grids are resampled with
    ``posext.resample`` (``mode``, ``antialias``, ``align_corners=False``; dtype and layout kept; prefix
    and suffix rows kept bit for bit), MAE sin-cos tables rebuilt exactly (``sincos="auto"``;
    ``"interpolate"`` resamples them), relative-position tables and attention biases resized as their
    families do, index buffers rebuilt, stale HF ``position_ids`` rebuilt, grid-dependent RoPE buffers
    removed. Tensors already at their new size are left alone. ``antialias`` is ignored for
    ``mode="nearest"``.

    Raises:
        AmbiguousGridError, GridArgumentError: a table's stored grid cannot be told (see
            :func:`find_position_embeddings`).
        GeometryError (a ValueError): a tensor's new size cannot be decided from the target; the message
            names the key and the argument that settles it.
    """
    plan = plan_resize(state_dict, new_grid, image_size=image_size, patch_size=patch_size,
                       num_frames=num_frames, mode=mode, antialias=antialias, old_size=old_size,
                       num_prefix_tokens=num_prefix_tokens, sincos=sincos)
    return plan.apply(state_dict)


__all__ = ["resize_state_dict", "plan_resize", "Plan", "Change", "SINCOS_POLICIES"]
