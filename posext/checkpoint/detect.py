"""Find the grid-shaped position embeddings of a flat state dict, with their layout, prefix rows and grid.

Facts used here are those of /work/shared/docs/checkpoints.md (sections 1-3):

* Where tables live: timm-style ``pos_embed`` ([1, P+N, C], or NHWC [1, H, W, C] for SAM / NaFlex),
  MAE ``decoder_pos_embed``, open_clip / OpenAI CLIP ``visual.positional_embedding`` ([1+N, C]), open_clip
  timm towers ``visual.trunk.pos_embed``, HF ``embeddings.position_embeddings`` (ViT, DeiT, Dinov2, ...),
  HF ``vision_model.embeddings.position_embedding.weight`` (CLIP P=1, SigLIP P=0) and big_vision /
  vision_transformer ``.npz`` keys (``[params/]img/pos_embedding``, ``[opt/target/]Transformer/posembed_input/
  pos_embedding``).
* P (rows stored in front of the grid) comes from family evidence first: a ``dist_token`` means cls + dist
  (2); DINOv2's own layout (``register_tokens`` or a 2-D ``mask_token``) keeps 1 row whatever the registers;
  timm's ``cls_token``/``reg_token`` allow only 0 (``no_embed_class``) or all prefix tokens, decided by which
  leaves a square grid. Without evidence, the generalised square rule: N square -> 0, N-1 -> 1, N-2 -> 2.
  Explicit ``old_size`` / ``num_prefix_tokens`` override; anything still undecidable raises
  :class:`AmbiguousGridError`.
* Never resized: text tables (root ``positional_embedding``, ``text.*``, ``text_model.*``, ``txt/*``), SAM's
  prompt-encoder Fourier matrix, relative-position tables; they are reported with action ``"skip"``.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from .. import _checks
from ..sincos import sincos_2d

ACTIONS = ("resample", "regenerate_sincos", "regenerate_position_ids", "drop", "skip")
LAYOUTS = ("tokens", "tokens_unbatched", "nhwc", "other")
GRID_ACTIONS = ("resample", "regenerate_sincos")

# Wrapper components inserted by DDP (`module.`) and torch.compile (`_orig_mod.`), ignored when matching names.
_WRAPPERS = ("module", "_orig_mod")
_GENERIC_PREFIX_COUNTS = (0, 1, 2)
_SINCOS_TOL = 1e-6
_BIG_VISION_CONTAINERS = {"params", "opt", "target", "img", "model", "module", "_orig_mod"}
_TEXT_COMPONENTS = {"language_model", "lm", "llm", "bert", "roberta", "t5"}


@dataclass
class Finding:
    key: str                                # key in the state dict as given (wrapper prefixes kept)
    action: str                             # one of ACTIONS
    layout: str                             # one of LAYOUTS
    old_grid: Optional[Tuple[int, int]]     # (H, W) of the stored grid, None when not a grid
    num_prefix_tokens: int                  # P rows stored in front of the grid
    family: str                             # "timm-vit", "deit-distilled", "dinov2", "mae", "open_clip", ...
    reason: str                             # one sentence: why this key, layout, P and grid (or why skipped)


class AmbiguousGridError(ValueError):
    """The stored grid (P and H x W) of a table cannot be inferred; the message names the key, the token count
    and the arguments that settle it (``old_size=(H, W)``, ``num_prefix_tokens=P``)."""

    def __init__(self, message: str, *, key: Optional[str] = None, num_tokens: Optional[int] = None):
        super().__init__(message)
        self.key = key
        self.num_tokens = num_tokens


# ------------------------------------------------------------------------------------------------ keys


class _Key:
    """A state-dict key split on '/' (``.npz``) or '.', with wrapper components dropped for matching."""

    def __init__(self, raw: str):
        self.raw = raw
        self.sep = "/" if "/" in raw else "."
        self.parts = tuple(raw.split(self.sep))
        self.norm = tuple(p for p in self.parts if p not in _WRAPPERS)

    def sibling(self, drop: int, name: str) -> str:
        """The raw key with its last ``drop`` components replaced by ``name`` (written with '.')."""
        head = self.parts[:len(self.parts) - drop]
        return self.sep.join(head + tuple(name.split(".")))

    def prefix(self, drop: int) -> str:
        head = self.parts[:len(self.parts) - drop]
        return self.sep.join(head) + self.sep if head else ""

    @property
    def is_text(self) -> bool:
        return any(p.lower().startswith(("text", "txt")) or p.lower() in _TEXT_COMPONENTS for p in self.norm[:-1])


class _Dict:
    """The state dict plus fast sibling look-ups."""

    def __init__(self, state_dict: Mapping):
        self.sd = state_dict
        self.keys = [k for k, v in state_dict.items() if isinstance(k, str) and isinstance(v, torch.Tensor)]
        self.key_set = set(self.keys)

    def get(self, key: str) -> Optional[torch.Tensor]:
        return self.sd[key] if key in self.key_set else None

    def has_under(self, prefix: str, needle: str) -> bool:
        return any(k.startswith(prefix) and needle in k[len(prefix):] for k in self.keys)


# ------------------------------------------------------------------------------------------------ grids


def _is_square(n: int) -> bool:
    return n >= 1 and math.isqrt(n) ** 2 == n


def _near_square_factors(n: int, limit: int = 2) -> List[Tuple[int, int]]:
    pairs = [(h, n // h) for h in range(2, math.isqrt(n) + 1) if n % h == 0]
    pairs.sort(key=lambda hw: hw[1] / hw[0])
    return pairs[:limit]


def _layout(t: torch.Tensor, allow_nhwc: bool) -> Optional[str]:
    if t.dim() == 4 and t.shape[0] == 1 and allow_nhwc:
        return "nhwc"
    if t.dim() == 3 and t.shape[0] == 1:
        return "tokens"
    if t.dim() == 2:
        return "tokens_unbatched"
    return None


def _fmt_grid(hw) -> str:
    return f"{hw[0]}x{hw[1]}"


def _ambiguous(key: str, shape, rows: int, why: str, candidates: Sequence[int]) -> AmbiguousGridError:
    example = None
    for p in candidates:
        pairs = _near_square_factors(rows - p) if rows - p > 0 else []
        if pairs:
            example = f"e.g. old_size={pairs[0]}, num_prefix_tokens={p}"
            break
    hint = f" ({example})" if example else ""
    return AmbiguousGridError(
        f"{key}: cannot tell the stored grid of shape {tuple(shape)} ({rows} tokens = P + N): {why}; pass "
        f"old_size=(H, W) and/or num_prefix_tokens=P{hint}", key=key, num_tokens=rows)


def _decide_grid(key: str, t: torch.Tensor, rows: int, candidates: Optional[Sequence[int]], evidence: str,
                 old_size, num_prefix_tokens) -> Tuple[int, Tuple[int, int], str]:
    """-> (P, (H, W), how they were chosen). ``candidates`` None means no family evidence."""
    cands = tuple(dict.fromkeys(candidates if candidates is not None else _GENERIC_PREFIX_COUNTS))
    if num_prefix_tokens is not None:
        p = num_prefix_tokens
        if p >= rows:
            raise ValueError(f"{key}: num_prefix_tokens={p} leaves no grid rows in shape {tuple(t.shape)} "
                             f"({rows} tokens)")
        n = rows - p
        note = "" if candidates is None or p in cands else f" (overriding the family rule: {evidence})"
        if old_size is not None:
            if old_size[0] * old_size[1] != n:
                raise ValueError(f"{key}: old_size={tuple(old_size)} has {old_size[0] * old_size[1]} tokens but "
                                 f"shape {tuple(t.shape)} has N = {rows} - num_prefix_tokens={p} = {n}")
            return p, tuple(old_size), f"explicit num_prefix_tokens={p} and old_size={tuple(old_size)}{note}"
        if not _is_square(n):
            raise _ambiguous(key, t.shape, rows, f"with num_prefix_tokens={p}, N={n} is not a square grid", (p,))
        side = math.isqrt(n)
        return p, (side, side), f"explicit num_prefix_tokens={p}{note} and a square grid"
    if old_size is not None:
        n = old_size[0] * old_size[1]
        p = rows - n
        if p < 0:
            raise ValueError(f"{key}: old_size={tuple(old_size)} has {n} tokens, more than the {rows} rows of "
                             f"shape {tuple(t.shape)}")
        if candidates is not None and p not in cands:
            raise ValueError(f"{key}: old_size={tuple(old_size)} leaves P={p} prefix rows in shape "
                             f"{tuple(t.shape)}, but {evidence} (P in {list(cands)}); pass "
                             f"num_prefix_tokens={p} as well to force it")
        return p, tuple(old_size), f"explicit old_size={tuple(old_size)} leaves {p} rows ({evidence})"
    fits = [p for p in cands if _is_square(rows - p)]
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
        why = (f"{evidence}, and no allowed prefix count leaves a square grid ({tried})" if candidates is not None
               else f"no family evidence and no square grid for P in 0..2 ({tried})")
        raise _ambiguous(key, t.shape, rows, why, cands)
    options = " and ".join(f"P={p} (N={rows - p} = {_fmt_grid((math.isqrt(rows - p),) * 2)})" for p in fits)
    raise _ambiguous(key, t.shape, rows, f"{evidence}, and both {options} fit", fits)


def _mae_sincos_match(t: torch.Tensor, p: int, grid: Tuple[int, int]) -> Tuple[bool, float]:
    """Whether ``t`` ([.., P+N, C]) equals MAE's sin-cos table (zero prefix rows) within 1e-6, or exactly its
    cast to ``t.dtype`` (half / bf16 tables)."""
    c = t.shape[-1]
    if c % 4 or not t.is_floating_point() or t.numel() == 0:
        return False, float("inf")
    x = t.detach().reshape(-1, c).to("cpu", torch.float64)
    ref = sincos_2d(c, grid, convention="mae", num_prefix_tokens=p, dtype=torch.float64, device="cpu")
    diff = (x - ref).abs().max().item()
    if diff <= _SINCOS_TOL:
        return True, diff
    if t.dtype in (torch.float16, torch.bfloat16):
        cast = ref.to(t.dtype).to(torch.float64)
        if torch.equal(x, cast):
            return True, 0.0
    return False, diff


# ------------------------------------------------------------------------------------------------ families


def _timm_family(d: _Dict, k: _Key, drop: int) -> Tuple[str, Optional[Tuple[int, ...]], str]:
    """Family, allowed P and the evidence sentence for a timm-style ``pos_embed`` (its siblings share the
    prefix of the last ``drop`` components)."""
    pre = k.prefix(drop)
    cls = d.get(k.sibling(drop, "cls_token"))
    reg = d.get(k.sibling(drop, "reg_token"))
    dist = d.get(k.sibling(drop, "dist_token"))
    registers = d.get(k.sibling(drop, "register_tokens"))
    mask = d.get(k.sibling(drop, "mask_token"))
    open_clip = k.norm[-3:-1] == ("visual", "trunk")
    if k.norm[-1] == "decoder_pos_embed" or d.get(k.sibling(drop, "decoder_pos_embed")) is not None:
        return "mae", (1,), "the MAE layout (decoder_pos_embed present) stores the cls row"
    if dist is not None:
        return ("open_clip" if open_clip else "deit-distilled"), (2,), \
            "dist_token present: DeiT distilled stores the cls and dist rows"
    if registers is not None or (mask is not None and mask.dim() == 2):
        what = "register_tokens (no rows)" if registers is not None else "a 2-D mask_token"
        return "dinov2", (1,), f"the DINOv2 layout with {what} stores only the cls row"
    n_cls = int(cls.shape[-2]) if cls is not None and cls.dim() >= 2 else (1 if cls is not None else 0)
    n_reg = int(reg.shape[-2]) if reg is not None and reg.dim() >= 2 else 0
    if open_clip:
        family = "open_clip"
    elif d.has_under(pre, "rel_pos_h") or d.has_under(pre, "neck."):
        family = "sam"
    elif d.has_under(pre, "relative_position_bias_table"):
        family = "beit"
    elif any(d.has_under(pre, s) for s in ("rope", "attn.q_proj", "mlp.fc1_g", "attn.q_bias")):
        family = "eva"
    else:
        family = "timm-vit"
    tower = "open_clip timm tower, " if open_clip else ""
    if n_cls + n_reg:
        have = " and ".join(s for s in ("cls_token" if n_cls else "", f"{n_reg} reg_token" if n_reg else "") if s)
        cands = (0, n_cls + n_reg)
        return family, cands, (f"{tower}{have} present: timm stores P=0 (no_embed_class) or "
                               f"P={n_cls + n_reg} (all prefix tokens)")
    if d.get(k.sibling(drop, "patch_embed.proj.weight")) is not None or d.has_under(pre, "blocks."):
        return family, (0,), f"{tower}no cls/reg/dist token next to the table (no prefix rows)"
    return family, None, f"{tower}no sibling keys"


def _hf_vit_family(d: _Dict, k: _Key) -> Tuple[str, Optional[Tuple[int, ...]], str]:
    """HF ``<model>.embeddings.position_embeddings`` [1, P+N, C]."""
    owner = k.norm[-3] if len(k.norm) >= 3 else ""
    cls = d.get(k.sibling(1, "cls_token"))
    dist = d.get(k.sibling(1, "distillation_token"))
    mask = d.get(k.sibling(1, "mask_token"))
    registers = d.get(k.sibling(1, "register_tokens"))
    patch = d.has_under(k.prefix(1), "patch_embeddings")
    if owner == "audio_spectrogram_transformer":
        family = "hf-ast"
    elif owner == "deit" or dist is not None:
        family = "hf-deit"
    elif owner.startswith("dinov2") or registers is not None or (mask is not None and mask.dim() == 2):
        family = "hf-dinov2"
    elif owner in ("beit", "data2vec_vision"):
        family = "hf-beit"
    else:
        family = "hf-vit"
    if dist is not None:
        return family, (2,), "HF embeddings with cls_token and distillation_token store both rows"
    if cls is not None:
        extra = " (register_tokens have none)" if registers is not None else ""
        return family, (1,), f"HF embeddings with cls_token store its row{extra}"
    if patch:
        return family, (0,), "HF embeddings without cls_token store no prefix rows"
    return family, None, "HF embeddings with no sibling keys"


# ------------------------------------------------------------------------------------------------ classify


def _skip(key, family, reason, grid=None, p=0) -> Finding:
    return Finding(key, "skip", "other", grid, p, family, reason)


def _grid_finding(d: _Dict, k: _Key, t: torch.Tensor, family: str, candidates, evidence: str, what: str,
                  old_size, num_prefix_tokens, allow_nhwc: bool = False, mae_by_key: bool = False) -> Finding:
    layout = _layout(t, allow_nhwc)
    if layout is None:
        return _skip(k.raw, family, f"{what} has shape {tuple(t.shape)}, which is no [1, P+N, C], [P+N, C] or "
                                    f"NHWC position grid, so it is left alone")
    if not t.is_floating_point():
        return _skip(k.raw, family, f"{what} has dtype {t.dtype}, not a floating table, so it is left alone")
    if layout == "nhwc":
        grid = (int(t.shape[1]), int(t.shape[2]))
        if old_size is not None and tuple(old_size) != grid:
            raise ValueError(f"{k.raw}: old_size={tuple(old_size)} does not match the NHWC grid {grid} of shape "
                             f"{tuple(t.shape)}")
        if num_prefix_tokens not in (None, 0):
            raise ValueError(f"{k.raw}: NHWC table {tuple(t.shape)} stores no prefix rows; got "
                             f"num_prefix_tokens={num_prefix_tokens}")
        return Finding(k.raw, "resample", layout, grid, 0, family,
                       f"{what}: NHWC [1, H, W, C] table, grid {_fmt_grid(grid)} from its shape, no prefix rows")
    rows = int(t.shape[-2])
    p, grid, how = _decide_grid(k.raw, t, rows, candidates, evidence, old_size, num_prefix_tokens)
    sincos, diff = _mae_sincos_match(t, p, grid)
    shape = "[1, P+N, C]" if layout == "tokens" else "[P+N, C]"
    how = f"{how}, so P={p} and the stored grid is {_fmt_grid(grid)} (N={grid[0] * grid[1]})"
    if sincos:
        if family in ("timm-vit", "unknown"):
            family = "mae"
        return Finding(k.raw, "regenerate_sincos", layout, grid, p, family,
                       f"{what} {shape}: {how}; its values equal MAE's fixed sin-cos table (max diff {diff:.1e}), "
                       f"so it is rebuilt with sincos_2d at the new grid")
    note = f"; MAE layout but not the fixed sin-cos table (max diff {diff:.1e}), so it is interpolated" \
        if mae_by_key else ""
    return Finding(k.raw, "resample", layout, grid, p, family, f"{what} {shape}: {how}{note}")


def _text_family(d: _Dict, k: _Key) -> str:
    norm = k.norm
    if norm[-1] == "positional_embedding" or "text" in norm:
        return "open_clip"
    if "txt" in norm:
        return "big_vision"
    if "text_model" in norm:
        i = k.parts.index("text_model")
        vision = k.sep.join(k.parts[:i] + ("vision_model", "embeddings", ""))
        if vision + "class_embedding" in d.key_set:
            return "hf-clip"
        if vision + "patch_embedding.weight" in d.key_set:
            return "hf-siglip"
    return "unknown"


def _classify(d: _Dict, k: _Key, t: torch.Tensor, old_size, num_prefix_tokens) -> Optional[Finding]:
    norm = k.norm
    last = norm[-1]
    name = norm[-2] if last == "weight" and len(norm) >= 2 else last
    pos_names = ("pos_embed", "decoder_pos_embed", "pos_embedding", "positional_embedding",
                 "position_embeddings", "position_embedding")
    args = (old_size, num_prefix_tokens)

    # never-resized tables first
    if name in pos_names and (k.is_text or (last == "positional_embedding" and len(norm) == 1)):
        return _skip(k.raw, _text_family(d, k), "text position embedding (1-D token sequence, not an image grid): "
                                                "never resized")
    if last in ("rel_pos_h", "rel_pos_w"):
        return _skip(k.raw, "sam", "relative-position table [2S-1, head_dim] sized by the attention window or "
                                   "global grid, not an absolute grid; SAM interpolates it at run time")
    if last == "relative_position_bias_table":
        return _skip(k.raw, "beit" if "rel_pos_bias" in norm or "blocks" in norm else "unknown",
                     "relative-position bias table sized by the attention window, not the image: never resized")
    if last == "positional_encoding_gaussian_matrix":
        return _skip(k.raw, "sam", "SAM prompt-encoder random Fourier matrix, not a grid: never resized")
    if last in ("pos_embed_y", "pos_embed_x"):
        return _skip(k.raw, "timm-naflexvit", "NaFlex factorized 1-D table (sized by the maximum grid): not "
                                              "resized as a 2-D grid")
    if last == "absolute_pos_embed":
        return _skip(k.raw, "swin", "Swin absolute_pos_embed: not handled (window and attention-mask buffers "
                                    "depend on the grid too)")

    if last == "positional_embedding":
        if "attnpool" in norm:
            return _skip(k.raw, "open_clip", "ModifiedResNet attention-pool table: its grid is image_size/32, not "
                                             "a patch grid, and open_clip does not resize it")
        if len(norm) >= 2 and norm[-2] == "visual":
            return _grid_finding(d, k, t, "open_clip", (1,), "open_clip / OpenAI CLIP store one cls row "
                                 "(visual.class_embedding)", "open_clip vision table", *args)
        return None

    if last in ("pos_embed", "decoder_pos_embed"):
        family, cands, evidence = _timm_family(d, k, 1)
        if family == "timm-vit" and (norm[-2:-1] == ("embeds",)):
            family = "timm-naflexvit"
        if family == "timm-vit" and t.dim() == 4 and any(p in norm for p in ("image_encoder", "vision_encoder")):
            family = "sam"
        what = {"mae": "MAE " + last, "open_clip": "open_clip timm-tower pos_embed", "sam": "SAM pos_embed"}.get(
            family, f"{family} {last}")
        return _grid_finding(d, k, t, family, cands, evidence, what, *args, allow_nhwc=True,
                             mae_by_key=family == "mae")

    if last == "pos_embedding":
        if norm[-3:] == ("Transformer", "posembed_input", "pos_embedding"):
            containers = norm[:-3]
            cls = d.get(k.sibling(3, "cls"))
            cands = (0, 1) if cls is not None else (0,)
            evidence = ("vision_transformer .npz with 'cls' stores a cls row (classifier='token') or none"
                        if cls is not None else "vision_transformer .npz without 'cls' (gap) stores no prefix rows")
        else:
            containers = norm[:-1]
            cls = d.get(k.sibling(1, "cls"))
            cands = (0, 1) if cls is not None else (0,)
            evidence = ("big_vision with 'cls' stores no prefix rows (added before the cls concat) or, in old "
                        "files, a cls row" if cls is not None
                        else "big_vision adds the table before any cls concat (no prefix rows)")
        if not set(containers) <= _BIG_VISION_CONTAINERS:
            return None
        return _grid_finding(d, k, t, "big_vision", cands, evidence, "big_vision pos_embedding", *args,
                             allow_nhwc=True)

    if norm[-2:] == ("embeddings", "position_embeddings"):
        family, cands, evidence = _hf_vit_family(d, k)
        return _grid_finding(d, k, t, family, cands, evidence, f"{family} embeddings.position_embeddings", *args)

    if norm[-3:] == ("embeddings", "position_embedding", "weight"):
        vision = "vision_model" in norm or d.get(k.sibling(2, "patch_embedding.weight")) is not None
        if not vision:
            if d.get(k.sibling(2, "token_embedding.weight")) is not None:
                return _skip(k.raw, "unknown", "text position embedding (token_embedding next to it): never resized")
            return _skip(k.raw, "unknown", "nn.Embedding position table with no vision_model prefix or "
                                           "patch_embedding next to it: cannot tell vision from text, left alone")
        if d.get(k.sibling(2, "class_embedding")) is not None:
            family, cands, evidence = "hf-clip", (1,), "HF CLIP (class_embedding present) stores one cls row"
        elif d.get(k.sibling(2, "patch_embedding.weight")) is not None:
            family, cands, evidence = "hf-siglip", (0,), "HF SigLIP (no class_embedding) stores no prefix rows"
        else:
            family, cands, evidence = "hf-clip", None, "HF vision embeddings with no sibling keys"
        f = _grid_finding(d, k, t, family, cands, evidence, "HF vision_model position_embedding.weight", *args)
        if cands is None and f.action in GRID_ACTIONS:
            f.family = "hf-clip" if f.num_prefix_tokens else "hf-siglip"
        return f
    return None


def _position_ids(d: _Dict, k: _Key, t: torch.Tensor, tables: Dict[str, Finding]) -> Optional[Finding]:
    if k.norm[-2:] != ("embeddings", "position_ids") or k.is_text:
        return None
    table = tables.get(k.sibling(1, "position_embedding.weight")) or tables.get(k.sibling(1, "position_embeddings"))
    if table is None or table.action not in GRID_ACTIONS:
        return None
    rows = table.num_prefix_tokens + table.old_grid[0] * table.old_grid[1]
    arange = torch.arange(rows, device=t.device)
    if t.is_floating_point() or t.is_complex() or t.dim() not in (1, 2) or t.shape[-1] != rows or \
            not torch.equal(t.reshape(-1, t.shape[-1]).long(), arange.expand(t.numel() // rows, rows)):
        return _skip(k.raw, table.family, f"position_ids {tuple(t.shape)} is not an arange over the {rows} rows of "
                                          f"{table.key}, so it is left alone", table.old_grid, table.num_prefix_tokens)
    return Finding(k.raw, "regenerate_position_ids", "other", table.old_grid, table.num_prefix_tokens, table.family,
                   f"stale HF position_ids buffer = arange({rows}) over the rows of {table.key}: rebuilt as arange "
                   f"for the new token count")


def _rope(d: _Dict, k: _Key, t: torch.Tensor, grids: Sequence[Tuple[int, int]], old_size) -> Optional[Finding]:
    if "rope" not in k.raw.lower() or k.is_text or t.dim() < 2:
        return None
    lead = int(t.shape[0])
    known = ([tuple(old_size)] if old_size is not None else []) + list(grids)
    grid = next((g for g in known if g[0] * g[1] == lead), None)
    if grid is None and not known and lead > 1 and _is_square(lead):
        grid = (math.isqrt(lead),) * 2
    if grid is None:
        return None
    return Finding(k.raw, "drop", "other", grid, 0, "eva",
                   f"grid-dependent RoPE buffer with a leading H*W = {lead} dim ({_fmt_grid(grid)} grid): dropped, "
                   f"the model rebuilds it for its own grid (timm's EVA filter skips these keys too)")


def find_position_embeddings(state_dict: Mapping, *, old_size=None, num_prefix_tokens=None) -> List[Finding]:
    """Findings for every position embedding of a flat ``state_dict`` (key -> tensor), in key order.

    Grid tables get action ``"resample"`` (learned) or ``"regenerate_sincos"`` (equal to MAE's fixed sin-cos
    table); stale HF ``position_ids`` get ``"regenerate_position_ids"``; grid-dependent RoPE buffers ``"drop"``;
    tables that look like position embeddings but are not image grids (text, relative positions) ``"skip"``.
    Unrecognised keys get no finding.

    Args:
        old_size: ``(H, W)`` (or ``n``) of the stored grid, for non-square grids; applies to every table.
        num_prefix_tokens: P rows stored in front of the grid; overrides the family rules.

    Raises:
        AmbiguousGridError: a table's P or grid cannot be inferred (non-square, or two readings fit).
        ValueError: explicit arguments contradict a table's shape.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of key -> tensor, got {type(state_dict).__name__}")
    if old_size is not None:
        old_size = _checks.grid_pair("old_size", old_size)
    if num_prefix_tokens is not None:
        num_prefix_tokens = _checks.nonnegative_int("num_prefix_tokens", num_prefix_tokens)
    d = _Dict(state_dict)
    parsed = {key: _Key(key) for key in d.keys}
    found: Dict[str, Finding] = {}
    for key in d.keys:
        f = _classify(d, parsed[key], state_dict[key], old_size, num_prefix_tokens)
        if f is not None:
            found[key] = f
    tables = {key: f for key, f in found.items() if f.action in GRID_ACTIONS}
    grids = list(dict.fromkeys(f.old_grid for f in tables.values()))
    for key in d.keys:
        if key in found:
            continue
        t = state_dict[key]
        f = _position_ids(d, parsed[key], t, tables) or _rope(d, parsed[key], t, grids, old_size)
        if f is not None:
            found[key] = f
    return [found[key] for key in d.keys if key in found]


__all__ = ["Finding", "AmbiguousGridError", "find_position_embeddings", "ACTIONS", "LAYOUTS"]
