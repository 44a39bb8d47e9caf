"""Family rules: which model family a position table belongs to, the prefix rows P it may store, and the
tables that are never resized. docs/checkpoints.md describes each family's layout."""
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Tuple, Union

from .header_shapes import is_tensor

if TYPE_CHECKING:
    import torch

# Wrapper components inserted by DDP (`module.`) and torch.compile (`_orig_mod.`), ignored when matching
# names.
WRAPPER_COMPONENTS = ("module", "_orig_mod")
BIG_VISION_CONTAINERS = {"params", "opt", "target", "img", "model", "module", "_orig_mod"}
TEXT_COMPONENTS = {"language_model", "lm", "llm", "bert", "roberta", "t5"}
POSITION_TABLE_NAMES = ("pos_embed", "decoder_pos_embed", "pos_embedding", "positional_embedding",
                        "position_embeddings", "position_embedding")

# (family, sibling-key fragments under the table's prefix): timm-layout families told apart by their other
# weights; the first family with a matching fragment wins, else "timm-vit".
TIMM_FAMILIES_BY_SIBLING = (
    ("sam", ("rel_pos_h", "neck.")),
    ("beit", ("relative_position_bias_table",)),
    ("eva", ("rope", "attn.q_proj", "mlp.fc1_g", "attn.q_bias")),
)


class Key:
    """A state-dict key split on '/' (``.npz``) or '.', with wrapper components dropped for matching."""

    def __init__(self, raw: str):
        self.raw = raw
        self.sep = "/" if "/" in raw else "."
        self.parts = tuple(raw.split(self.sep))
        self.norm = tuple(p for p in self.parts if p not in WRAPPER_COMPONENTS)

    def sibling(self, drop: int, name: str) -> str:
        """The raw key with its last ``drop`` components replaced by ``name`` (written with '.')."""
        head = self.parts[:len(self.parts) - drop]
        return self.sep.join(head + tuple(name.split(".")))

    def prefix(self, drop: int) -> str:
        head = self.parts[:len(self.parts) - drop]
        return self.sep.join(head) + self.sep if head else ""

    @property
    def is_text(self) -> bool:
        return any(p.lower().startswith(("text", "txt")) or p.lower() in TEXT_COMPONENTS
                   for p in self.norm[:-1])


class StateView:
    """The state dict plus fast sibling look-ups. A mapping whose tensors are shape-only (``meta``) may offer
    ``read_tensor(key)``: the few checks that need values (MAE's sin-cos table, position_ids) read through
    it."""

    def __init__(self, state_dict: Mapping):
        self.sd = state_dict
        self.keys = [k for k, v in state_dict.items() if isinstance(k, str) and is_tensor(v)]
        self.key_set = set(self.keys)

    def get(self, key: str) -> Optional["torch.Tensor"]:
        return self.sd[key] if key in self.key_set else None

    def values(self, key: str) -> Optional["torch.Tensor"]:
        """The tensor with its values, or None when only its shape is known."""
        t = self.sd[key]
        if not t.is_meta:
            return t
        reader = getattr(self.sd, "read_tensor", None)
        return reader(key) if reader is not None else None

    def has_under(self, prefix: str, needle: str) -> bool:
        return any(k.startswith(prefix) and needle in k[len(prefix):] for k in self.keys)


# family, allowed P (None: no evidence), evidence sentence
Family = Tuple[str, Optional[Tuple[int, ...]], str]


def timm_family(d: StateView, k: Key, drop: int) -> Family:
    """A timm-style ``pos_embed`` (its siblings share the prefix of the last ``drop`` components)."""
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
    family = "open_clip" if open_clip else next(
        (name for name, fragments in TIMM_FAMILIES_BY_SIBLING if any(d.has_under(pre, f) for f in fragments)),
        "timm-vit")
    tower = "open_clip timm tower, " if open_clip else ""
    if n_cls + n_reg:
        have = " and ".join(s for s in ("cls_token" if n_cls else "", f"{n_reg} reg_token" if n_reg else "")
                            if s)
        return family, (0, n_cls + n_reg), (f"{tower}{have} present: timm stores P=0 (no_embed_class) or "
                                            f"P={n_cls + n_reg} (all prefix tokens)")
    if d.get(k.sibling(drop, "patch_embed.proj.weight")) is not None or d.has_under(pre, "blocks."):
        return family, (0,), f"{tower}no cls/reg/dist token next to the table (no prefix rows)"
    return family, None, f"{tower}no sibling keys"


def hf_vit_family(d: StateView, k: Key) -> Family:
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


def hf_vision_family(d: StateView, k: Key) -> Family:
    """HF ``vision_model.embeddings.position_embedding.weight`` (nn.Embedding, [P+N, C])."""
    if d.get(k.sibling(2, "class_embedding")) is not None:
        return "hf-clip", (1,), "HF CLIP (class_embedding present) stores one cls row"
    if d.get(k.sibling(2, "patch_embedding.weight")) is not None:
        return "hf-siglip", (0,), "HF SigLIP (no class_embedding) stores no prefix rows"
    return "hf-clip", None, "HF vision embeddings with no sibling keys"


def big_vision_family(d: StateView, k: Key) -> Optional[Family]:
    """big_vision ``[params/]img/pos_embedding`` or vision_transformer
    ``Transformer/posembed_input/pos_embedding``; None when the key sits under containers those formats do not
    use."""
    if k.norm[-3:] == ("Transformer", "posembed_input", "pos_embedding"):
        containers, cls = k.norm[:-3], d.get(k.sibling(3, "cls"))
        evidence = ("vision_transformer .npz with 'cls' stores a cls row (classifier='token') or none"
                    if cls is not None
                    else "vision_transformer .npz without 'cls' (gap) stores no prefix rows")
    else:
        containers, cls = k.norm[:-1], d.get(k.sibling(1, "cls"))
        evidence = ("big_vision with 'cls' stores no prefix rows (added before the cls concat) or, in old "
                    "files, a cls row" if cls is not None
                    else "big_vision adds the table before any cls concat (no prefix rows)")
    if not set(containers) <= BIG_VISION_CONTAINERS:
        return None
    return "big_vision", ((0, 1) if cls is not None else (0,)), evidence


def text_family(d: StateView, k: Key) -> str:
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


# Tables that are never resized, by the last key component: (names, family or family(key), reason).
NEVER_RESIZED: Tuple[Tuple[Tuple[str, ...], Union[str, Callable[[Key], str]], str], ...] = (
    (("positional_encoding_gaussian_matrix",), "sam",
     "SAM prompt-encoder random Fourier matrix, not a grid: never resized"),
    (("pos_embed_y", "pos_embed_x"), "timm-naflexvit",
     "NaFlex factorized 1-D table (sized by the maximum grid): not resized as a 2-D grid"),
    (("absolute_pos_embed",), "swin",
     "Swin absolute_pos_embed: not handled (window and attention-mask buffers depend on the grid too)"),
)


def never_resized(k: Key) -> Optional[Tuple[str, str]]:
    """(family, reason) when the key's last component names a table that is never resized."""
    for names, family, reason in NEVER_RESIZED:
        if k.norm[-1] in names:
            return (family(k) if callable(family) else family), reason
    return None
