"""Hugging Face ``config.json`` and processor configs: read and rewrite the vision geometry.

Config conventions (``updated_config``). A *vision node* is the top level or any nested dict
(``vision_config``, ``backbone_config``, ``prompt_encoder_config``, ``encoder`` ...) holding ``image_size`` or
``patch_size``. Each node's family comes from its ``model_type`` (or, when a nested node lacks one, its
parent's type plus ``_vision_model`` / ``_vision``) and says how the model classes read the fields:

* ``square``: ``image_size // patch_size`` on plain ints (CLIP, SigLIP, BLIP, BLIP-2, InstructBLIP(Video),
  OwlViT, OWLv2, GIT, Idefics/Idefics2, SAM vision and prompt encoder, TimeSformer, X-CLIP, Chinese-CLIP,
  AltCLIP, CLIPSeg, GroupViT): one int, square sizes only.
* ``grid``: ``image_size`` one int or ``[H, W]``, ``patch_size`` an int (ViT, DeiT, Dinov2 (+registers),
  ViTMAE, ViT-MSN, I-JEPA, BEiT, Data2Vec-vision, DPT, Swin, Swinv2, VideoMAE): an int stays an int while
  the size is square, ``[H, W]`` otherwise.
* ``yolos``: ``image_size`` always ``[H, W]``; ``patch_size`` an int.
* ``vivit``: ``image_size`` as ``grid``; the patch is ``tubelet_size[1:]`` of ``[t, h, w]`` (may be
  non-square).
* any other type: the stored form is kept (an int takes square sizes only, a list takes any).

Non-square patch sizes are refused everywhere but ViViT: the other classes divide by ``patch_size`` as an
int when they interpolate. ``num_frames`` is written where a node has it (TimeSformer, ViViT, VideoMAE,
X-CLIP). SAM's prompt encoder also gets ``image_embedding_size`` = image // patch when stored.
"""
import copy
from typing import Optional, Tuple

from .. import _sizes

_SQUARE = frozenset({
    "clip_vision_model", "siglip_vision_model", "blip_vision_model", "blip_2_vision_model",
    "instructblip_vision_model", "instructblipvideo_vision_model", "owlvit_vision_model",
    "owlv2_vision_model", "git_vision_model", "idefics2_vision", "idefics_vision", "sam_vision_model",
    "sam_prompt_encoder", "timesformer", "xclip_vision_model", "chinese_clip_vision_model",
    "altclip_vision_model", "clipseg_vision_model", "groupvit_vision_model"})
_GRID = frozenset({
    "vit", "deit", "dinov2", "dinov2_with_registers", "vit_mae", "vit_msn", "ijepa", "beit",
    "data2vec-vision",     "dpt", "swin", "swinv2", "videomae"})
_ACCEPTS = {"square": "one int (square sizes only)",
            "grid": "one int or [H, W]", "yolos": "[H, W]", "vivit": "one int or [H, W]",
            "keep-int": "one int here (square sizes only)", "keep-list": "[H, W]"}
_GEOMETRY_FIELDS = ("image_size", "patch_size", "tubelet_size")


def _pair(value) -> Tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"expected one int or two, got {value!r}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _family(node: dict, parent_type: Optional[str]) -> Tuple[str, Optional[str]]:
    """(family, model_type) of one vision node."""
    model_type = node.get("model_type")
    if model_type is None and parent_type is not None:
        for suffix in ("_vision_model", "_vision"):
            if parent_type + suffix in _SQUARE:
                model_type = parent_type + suffix
    if model_type in _SQUARE:
        return "square", model_type
    if model_type in _GRID:
        return "grid", model_type
    if model_type in ("yolos", "vivit"):
        return model_type, model_type
    form = node.get("image_size")
    return ("keep-list" if isinstance(form, (list, tuple)) else "keep-int"), model_type


def _vision_nodes(config: dict):
    """(dotted path, node, parent model_type) of every vision node; the top level first, then
    ``vision_config``, ``backbone_config``, then the rest in key order (so the first is the image tower)."""
    found = []

    def walk(node, path, parent_type):
        if any(f in node for f in _GEOMETRY_FIELDS):
            found.append((path, node, parent_type))
        children = [(k, v) for k, v in node.items() if isinstance(v, dict)]
        children.sort(key=lambda kv: (kv[0] not in ("vision_config", "backbone_config"),))
        for key, child in children:
            walk(child, f"{path}.{key}" if path else key, node.get("model_type", parent_type))

    walk(config, "", None)
    return found


def _field(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def read_geometry(config: dict) -> dict:
    """The image tower's geometry as its model class reads it.

    Returns ``{"field": dotted path of the node ("" = top level), "model_type", "family",
    "image_size": (H, W), "patch_size": (h, w)}`` plus ``"num_frames"`` and ``"tubelet_size"`` (the temporal
    extent, an int) where the node has them. ViViT's ``tubelet_size [t, h, w]`` gives ``patch_size (h, w)``
    and ``tubelet_size t``. A field the node lacks is absent. ValueError when no node holds ``image_size``.
    """
    for path, node, parent_type in _vision_nodes(config):
        if "image_size" not in node:
            continue
        family, model_type = _family(node, parent_type)
        out = {"field": path, "model_type": model_type, "family": family,
               "image_size": _pair(node["image_size"])}
        tubelet = node.get("tubelet_size")
        if family == "vivit" and isinstance(tubelet, (list, tuple)) and len(tubelet) == 3:
            out["patch_size"] = (int(tubelet[1]), int(tubelet[2]))
            out["tubelet_size"] = int(tubelet[0])
        else:
            if "patch_size" in node:
                out["patch_size"] = _pair(node["patch_size"])
            if tubelet is not None:
                out["tubelet_size"] = int(tubelet[0] if isinstance(tubelet, (list, tuple)) else tubelet)
        if "num_frames" in node and node["num_frames"] is not None:
            out["num_frames"] = int(node["num_frames"])
        return out
    raise ValueError("config.json has no image_size at the top level or in a nested vision config")


def _image_value(family: str, old, size: Tuple[int, int], where: str):
    square = size[0] == size[1]
    if family == "yolos" or family == "keep-list":
        return [size[0], size[1]]
    if family in ("square", "keep-int"):
        if not square:
            raise ValueError(f"{where}: cannot represent image size {size[0]}x{size[1]}: this family accepts "
                             f"{_ACCEPTS[family]}; the weights would build a different model")
        return size[0]
    # grid / vivit: keep the stored form while it can hold the size
    if square and not isinstance(old, (list, tuple)):
        return size[0]
    return [size[0], size[1]]


def _patch_value(family: str, node: dict, size: Tuple[int, int], where: str):
    if size[0] != size[1]:
        raise ValueError(f"{where}: cannot represent patch size {size[0]}x{size[1]}: this family accepts one "
                         f"int (square patches only); the weights would build a different model")
    old = node["patch_size"]
    return [size[0], size[1]] if isinstance(old, (list, tuple)) and family != "square" else size[0]


def updated_config(config: dict, *, image_size=None, patch_size=None, num_frames=None) -> dict:
    """A deep copy of ``config`` (a parsed ``config.json``) with every field that sizes the position tables
    set to the new geometry, nested vision nodes included, other fields and key order kept.

    ``image_size`` / ``patch_size``: ``(H, W)`` or one int; ``num_frames``: an int; None leaves that field as
    it is. Raises ValueError naming the field when a family cannot represent the request (see the module
    docstring) or when no node holds the field asked for.
    """
    out = copy.deepcopy(config)
    image = None if image_size is None else _sizes.grid_pair("image_size", image_size)
    patch = None if patch_size is None else _sizes.grid_pair("patch_size", patch_size)
    nodes = _vision_nodes(out)
    wrote = {"image_size": False, "patch_size": False, "num_frames": False}
    for path, node, parent_type in nodes:
        family, model_type = _family(node, parent_type)
        kind = f" ({model_type})" if model_type else ""
        if image is not None and "image_size" in node:
            node["image_size"] = _image_value(family, node["image_size"], image,
                                              _field(path, "image_size") + kind)
            wrote["image_size"] = True
        if patch is not None:
            tubelet = node.get("tubelet_size")
            if family == "vivit" and isinstance(tubelet, (list, tuple)) and len(tubelet) == 3:
                node["tubelet_size"] = [int(tubelet[0]), patch[0], patch[1]]
                wrote["patch_size"] = True
            elif "patch_size" in node:
                node["patch_size"] = _patch_value(family, node, patch, _field(path, "patch_size") + kind)
                wrote["patch_size"] = True
        if num_frames is not None and "num_frames" in node:
            node["num_frames"] = int(num_frames)
            wrote["num_frames"] = True
        if "image_embedding_size" in node and "image_size" in node and "patch_size" in node:
            node["image_embedding_size"] = _pair(node["image_size"])[0] // _pair(node["patch_size"])[0]
    asked = {"image_size": image, "patch_size": patch, "num_frames": num_frames}
    for name, value in asked.items():
        if value is not None and not wrote[name]:
            raise ValueError(f"config.json has no {name} field (top level or nested vision config) to set to "
                             f"{value}; the family may size its tables some other way")
    return out


# --- image / video processors ---------------------------------------------------------------------------

PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")
NESTED_PROCESSORS = ("image_processor", "video_processor")


def _crop_applies(pp: dict) -> bool:
    return pp.get("crop_size") is not None and bool(pp.get("do_center_crop", True))


def _hw(value) -> Tuple[int, int]:
    if isinstance(value, dict):
        return int(value["height"]), int(value["width"])
    return _pair(value)


def _as_stored(old, h: int, w: int):
    """``{"height", "width"}``, or one int where the file stored one int and the size is square."""
    if not isinstance(old, dict) and h == w:
        return h
    return {"height": h, "width": w}


def _resized_size(pp: dict, size: Tuple[int, int]):
    """The processor's new ``size`` (see :func:`updated_preprocessor`)."""
    h, w = size
    old = pp["size"]
    crop = _hw(pp["crop_size"]) if _crop_applies(pp) else None
    exact = isinstance(old, dict) and {"height", "width"} <= set(old)
    if exact or not isinstance(old, dict) and crop is None:
        if crop is None:
            return _as_stored(old, h, w)
        oh, ow = _hw(old)  # resize margin around the crop (DeiT 256 -> 224), kept per axis
        return _as_stored(old, round(h * oh / crop[0]), round(w * ow / crop[1]))
    if not isinstance(old, dict):  # a bare int resized then center-cropped: the shortest edge
        return round(max(h, w) * int(old) / max(crop))
    keys = set(old) - {"max_height", "max_width"}
    if keys == {"shortest_edge"}:
        if crop is not None:  # a square source image must cover the whole crop: shortest edge >= max(H, W)
            return {**old, "shortest_edge": round(max(h, w) * old["shortest_edge"] / max(crop))}
        if h != w:
            raise ValueError(f"size {old}: a shortest-edge resize with no center crop gives images of the "
                             f"source's aspect ratio, never a fixed {h}x{w}")
        return {**old, "shortest_edge": h}
    if keys == {"longest_edge"}:
        return {**old, "longest_edge": max(h, w)}
    if keys == {"shortest_edge", "longest_edge"}:
        return {**old, "longest_edge": max(h, w), "shortest_edge": min(int(old["shortest_edge"]), min(h, w))}
    raise ValueError(f"size {old}: unknown size form; expected height/width, shortest_edge and/or "
                     f"longest_edge")


def updated_preprocessor(pp: dict, image_size, *, num_frames=None) -> dict:
    """A deep copy of a parsed ``preprocessor_config.json`` / ``video_preprocessor_config.json`` (or a
    ``processor_config.json`` whose ``image_processor`` / ``video_processor`` entries are updated) set up to
    feed ``image_size`` = ``(H, W)`` images; every other field kept.

    By the processor's ``size`` form:

    * ``{"height", "width"}`` (ViT, SigLIP, BLIP, DPT, BEiT, OwlViT, OWLv2): resized straight to ``H x W``;
      with a center crop in use (DeiT: 256 then crop 224) the crop becomes ``H x W`` and ``size`` keeps its
      margin over the crop per axis.
    * ``{"shortest_edge"}`` with a center crop (CLIP, Bit/Dinov2, VideoMAE, ViViT): shortest-edge resize, then
      center crop to ``crop_size`` = ``H x W``; the shortest edge keeps its ratio to the crop, taken against
      ``max(H, W)`` so a square image covers the whole crop (CLIP 224/224 -> ``max(H, W)``; ViViT 256/224).
      Without a crop (ConvNeXt's ``crop_pct`` path) only square sizes are possible: ``shortest_edge = H``.
    * ``{"longest_edge"}`` (SAM): ``longest_edge = max(H, W)`` and ``pad_size`` = ``H x W``.
    * ``{"shortest_edge", "longest_edge"}`` (YOLOS/DETR, Idefics2: aspect-kept resize within bounds):
      ``longest_edge = max(H, W)``, ``shortest_edge`` capped at ``min(H, W)``.
    * a bare int (older files): kept an int where it still says the same thing.

    ``crop_size`` is set to ``H x W`` even when the crop is off, so turning it on keeps the geometry.
    ``num_frames``, where given and stored, is set too. ValueError for a size form that cannot give ``H x W``.
    """
    size = _sizes.grid_pair("image_size", image_size)
    out = copy.deepcopy(pp)
    nested = [k for k in NESTED_PROCESSORS if isinstance(out.get(k), dict)]
    for key in nested:
        out[key] = updated_preprocessor(out[key], size, num_frames=num_frames)
    if "size" not in out and "crop_size" not in out:
        if nested:
            return out
        raise ValueError("the processor config has no size or crop_size field")
    if out.get("size") is not None:
        out["size"] = _resized_size(out, size)
    if out.get("crop_size") is not None:
        out["crop_size"] = _as_stored(out["crop_size"], *size)
    if isinstance(out.get("pad_size"), dict):
        out["pad_size"] = {**out["pad_size"], "height": size[0], "width": size[1]}
    if num_frames is not None and "num_frames" in out:
        out["num_frames"] = int(num_frames)
    return out


# --- folders ------------------------------------------------------------------------------------------------
