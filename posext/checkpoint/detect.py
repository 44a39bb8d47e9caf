"""Find every grid-dependent tensor of a flat state dict, with its layout, prefix rows, grid and rule.

What this relies on (where each family stores its tensors, the prefix-row rules, the layouts, the rules
that give each tensor's grid, and what is never touched) is written down in the repository's
``docs/checkpoints.md``. In short, in the order the detector applies them:

* Absolute tables by their key: timm-style ``pos_embed`` (NHWC for SAM), MAE ``decoder_pos_embed``,
  open_clip / OpenAI CLIP ``visual.positional_embedding``, HF ``embeddings.position_embeddings`` and
  ``vision_model.embeddings.position_embedding.weight``, big_vision / vision_transformer ``.npz`` keys
  (``families.py``), and the families with their own layouts: video tables (``video.py``), multi-stage
  tables (``hierarchical.py``), PiT, CrossViT, TNT, YOLOS, BLIP, MobileCLIP (``absolute.py``).
* P (rows stored in front of the grid) comes from family evidence first, then the square rule; explicit
  ``old_size`` / ``num_prefix_tokens`` override; anything still undecidable raises
  :class:`AmbiguousGridError` (``grid.py``). Each table's image -> grid rule comes from the patch-embedding
  kernel beside it (``patches.py``) unless its family sets one.
* Relative-position tensors, attention biases and index buffers next (``relative.py``), then stale HF
  ``position_ids``, persisted RoPE buffers and the patch-embedding kernels themselves.
* Text tables, SAM's prompt-encoder matrix and tables the model resizes at run time get action ``"skip"``
  (``families.NEVER_RESIZED`` and the family rules); tensors whose size posext does not decide get
  ``"unsupported"`` and are refused when the image size changes.
"""
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional

from .. import _sizes
from .absolute import family_table_finding
from .families import (
    POSITION_TABLE_NAMES,
    Key,
    StateView,
    big_vision_family,
    hf_vision_family,
    hf_vit_family,
    never_resized,
    text_family,
    timm_family,
)
from .findings import (
    ACTIONS,
    GRID_ACTIONS,
    LAYOUTS,
    Finding,
    grid_finding,
    position_ids_finding,
    rope_finding,
    skip,
)
from .grid import AmbiguousGridError, GridArgumentError, fmt_grid
from .hierarchical import stage_table_finding
from .patches import kernel_size, only_rule, sibling_rule
from .relative import relative_findings
from .video import video_finding

if TYPE_CHECKING:
    import torch


def _classify(d: StateView, k: Key, t: "torch.Tensor", old_size, num_prefix_tokens) -> Optional[Finding]:
    norm = k.norm
    last = norm[-1]
    name = norm[-2] if last == "weight" and len(norm) >= 2 else last
    args = (old_size, num_prefix_tokens)

    # never-resized tables first
    if name in POSITION_TABLE_NAMES and (k.is_text or (last == "positional_embedding" and len(norm) == 1)):
        return skip(k.raw, text_family(d, k), "text position embedding (1-D token sequence, not an image "
                                              "grid): never resized")
    rule = never_resized(k)
    if rule is not None:
        return skip(k.raw, *rule)
    f = (video_finding(d, k, t, *args) or stage_table_finding(d, k, t, *args)
         or family_table_finding(d, k, t, *args))
    if f is not None:
        return f

    if last == "positional_embedding":
        if "attnpool" in norm:
            return skip(k.raw, "open_clip", "ModifiedResNet attention-pool table: its grid is image_size/32, "
                                            "not a patch grid, and open_clip does not resize it")
        if len(norm) >= 2 and norm[-2] == "visual":
            return grid_finding(d, k, t, "open_clip", (1,), "open_clip / OpenAI CLIP store one cls row "
                                "(visual.class_embedding)", "open_clip vision table", *args)
        return None

    if last in ("pos_embed", "decoder_pos_embed"):
        family, cands, evidence = timm_family(d, k, 1)
        if family == "timm-vit" and (norm[-2:-1] == ("embeds",)):
            f = grid_finding(d, k, t, "timm-naflexvit", cands, evidence, "NaFlex pos_embed", *args,
                             allow_nhwc=True)
            if f.action == "resample":
                f.params["runtime_resized"] = True
                f.reason += ("; the model resamples it to each input's grid at run time, so an image size "
                             "leaves it alone and only an explicit grid (pos_embed_grid_size) resizes it")
            return f
        if family == "timm-vit" and norm[-2:] == ("encoder", "pos_embed") and len(norm) == 2 \
                and d.get(k.sibling(1, "patch_embed.proj.weight")) is not None \
                and d.get(k.sibling(1, "cls_token")) is None:
            return skip(k.raw, "qwen-vl", "Qwen-VL-style vision table (encoder.pos_embed beside "
                                          "encoder.patch_embed): a fixed grid the model interpolates to each "
                                          "image's grid at run time; left alone")
        if t.dim() == 4 and any(d.get(k.sibling(1, n)) is not None
                                for n in ("pos_embed_win", "pos_embed_window")):
            return skip(k.raw, "hiera", "Hiera / SAM2 background table [1, C, h, w] beside a window table: a "
                                        "fixed size the model interpolates to its grid at run time; left "
                                        "alone")
        if family == "timm-vit" and t.dim() == 4 and any(p in norm
                                                         for p in ("image_encoder", "vision_encoder")):
            family = "sam"
        what = {"mae": "MAE " + last, "open_clip": "open_clip timm-tower pos_embed",
                "sam": "SAM pos_embed"}.get(family, f"{family} {last}")
        return grid_finding(d, k, t, family, cands, evidence, what, *args, allow_nhwc=True,
                            mae_by_key=family == "mae")

    if last == "pos_embedding":
        rules = big_vision_family(d, k)
        if rules is None:
            return None
        return grid_finding(d, k, t, *rules, "big_vision pos_embedding", *args, allow_nhwc=True)

    if norm[-2:] == ("embeddings", "position_embeddings"):
        family, cands, evidence = hf_vit_family(d, k)
        return grid_finding(d, k, t, family, cands, evidence, f"{family} embeddings.position_embeddings",
                            *args)

    if norm[-3:] == ("embeddings", "position_embedding", "weight"):
        vision = "vision_model" in norm or d.get(k.sibling(2, "patch_embedding.weight")) is not None
        if not vision:
            if d.get(k.sibling(2, "token_embedding.weight")) is not None:
                return skip(k.raw, "unknown", "text position embedding (token_embedding next to it): "
                                              "never resized")
            return skip(k.raw, "unknown", "nn.Embedding position table with no vision_model prefix or "
                                          "patch_embedding next to it: cannot tell vision from text, "
                                          "left alone")
        family, cands, evidence = hf_vision_family(d, k)
        f = grid_finding(d, k, t, family, cands, evidence, "HF vision_model position_embedding.weight", *args)
        if cands is None and f.action in GRID_ACTIONS:
            f.family = "hf-clip" if f.num_prefix_tokens else "hf-siglip"
        return f
    return None


def find_position_embeddings(state_dict: Mapping, *, old_size=None, num_prefix_tokens=None) -> List[Finding]:
    """Findings for every position embedding of a flat ``state_dict`` (key -> tensor), in key order.

    Grid tables get action ``"resample"`` (learned) or ``"regenerate_sincos"`` (equal to MAE's fixed sin-cos
    table); stale HF ``position_ids`` get ``"regenerate_position_ids"``; grid-dependent RoPE buffers
    ``"drop"``; tables that look like position embeddings but are not image grids (text, relative positions)
    ``"skip"``.
    Unrecognised keys get no finding. Only shapes are needed, except for the few tables whose values decide
    their action (a table that may be MAE's sin-cos table, ``position_ids``): ``meta`` tensors are accepted
    when the mapping has ``read_tensor(key)`` to read those.

    Args:
        old_size: ``(H, W)`` (or ``n``) of the stored grid, for non-square grids; applies to every table.
        num_prefix_tokens: P rows stored in front of the grid; overrides the family rules.

    Raises:
        AmbiguousGridError: a table's P or grid cannot be inferred (non-square, or two readings fit).
        ValueError: explicit arguments contradict a table's shape (:class:`GridArgumentError`).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of key -> tensor, got {type(state_dict).__name__}")
    if old_size is not None:
        old_size = _sizes.grid_pair("old_size", old_size)
    if num_prefix_tokens is not None:
        num_prefix_tokens = _sizes.nonnegative_int("num_prefix_tokens", num_prefix_tokens)
    d = StateView(state_dict)
    parsed = {key: Key(key) for key in d.keys}
    found: Dict[str, Finding] = {}
    for key in d.keys:
        f = _classify(d, parsed[key], state_dict[key], old_size, num_prefix_tokens)
        if f is not None:
            found[key] = f
    tables = {key: f for key, f in found.items() if f.action in GRID_ACTIONS}
    _attach_rules(d, parsed, tables)
    found.update(relative_findings(d, parsed, found, old_size))
    grids = list(dict.fromkeys(f.old_grid for f in tables.values()))
    for key in d.keys:
        if key in found:
            continue
        t = state_dict[key]
        f = position_ids_finding(d, parsed[key], t, tables) or rope_finding(parsed[key], t, grids, old_size)
        if f is not None:
            if f.action == "drop":
                f.rule = next((g.rule for g in tables.values() if g.old_grid == f.old_grid), None)
            found[key] = f
    found.update(_patch_kernel_findings(d, found))
    return [found[key] for key in d.keys if key in found]


def _attach_rules(d: StateView, parsed: Dict[str, Key], tables: Dict[str, Finding]) -> None:
    """Each grid table's image -> grid rule, from the patch-embedding kernel beside it (one, two or three
    key components up), else from the only patch-embedding kernel of the state dict."""
    fallback = None
    for key, f in tables.items():
        if f.rule is not None:
            continue
        k = parsed[key]
        f.rule = next((r for drop in (1, 2, 3) if len(k.parts) > drop - 1
                       for r in [sibling_rule(d, k, drop)] if r is not None), None)
        if f.rule is None:
            fallback = fallback or only_rule(d)
            f.rule = fallback


def _patch_kernel_findings(d: StateView, found: Dict[str, Finding]) -> Dict[str, Finding]:
    """A finding for each patch-embedding kernel that feeds a table: resized only for a new patch size."""
    out = {}
    for f in list(found.values()):
        key = f.rule.patch_key if f.rule is not None else None
        if key is None or key in found or key in out:
            continue
        kernel, frames = kernel_size(d, key)
        layout = "hwio" if key.endswith("/kernel") else "other"
        out[key] = Finding(key, "resize_patch_embed", layout, kernel, 0, f.family,
                           f"patch-embedding kernel {fmt_grid(kernel)} of {f.key}: resized with FlexiViT's "
                           f"pseudo-inverse resize for a new patch size, else left alone")
    return out


__all__ = ["Finding", "AmbiguousGridError", "GridArgumentError", "find_position_embeddings", "ACTIONS",
           "LAYOUTS"]
