"""Hugging Face ``save_pretrained`` folders: read and rewrite their vision geometry, resize their weights.

A folder is ``config.json`` plus weights (``model.safetensors`` / ``pytorch_model.bin``, or an index
``model.safetensors.index.json`` / ``pytorch_model.bin.index.json`` with its shards). The output of
:func:`resize_folder` loads with ``from_pretrained`` as is: the tables are resized, ``config.json`` builds
tables of that size and the image processor feeds images of that size.

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
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .. import _checks
from .io import load_checkpoint, replace_state_dicts, save_checkpoint
from .shapes import ShapeOnlyStateDict, load_shapes
from .signals import critical
from .tempfiles import TEMP_PREFIX, lock_folder, make_temp_folder

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
    image = None if image_size is None else _checks.grid_pair("image_size", image_size)
    patch = None if patch_size is None else _checks.grid_pair("patch_size", patch_size)
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
_NESTED_PROCESSORS = ("image_processor", "video_processor")


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
    size = _checks.grid_pair("image_size", image_size)
    out = copy.deepcopy(pp)
    nested = [k for k in _NESTED_PROCESSORS if isinstance(out.get(k), dict)]
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

CONFIG_FILE = "config.json"
# (index, single file) of each weight set HF writes; a folder may hold both kinds
WEIGHT_SETS = (("model.safetensors.index.json", "model.safetensors"),
               ("pytorch_model.bin.index.json", "pytorch_model.bin"))
# weights no resize here rewrites: copied they would be stale tables of the old size, so they are left out
_STALE_PREFIXES = ("model", "pytorch_model", "tf_model", "flax_model")
_STALE_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".gguf")


def weight_sets(folder: str) -> List[Tuple[Optional[str], List[str]]]:
    """(index file or None, shard file names) of each complete weight set in ``folder``."""
    sets = []
    for index, single in WEIGHT_SETS:
        index_path = os.path.join(folder, index)
        if os.path.isfile(index_path):
            with open(index_path) as f:
                weight_map = json.load(f).get("weight_map", {})
            shards = sorted(set(weight_map.values()))
            if shards and all(os.path.isfile(os.path.join(folder, s)) for s in shards):
                sets.append((index, shards))
        elif os.path.isfile(os.path.join(folder, single)):
            sets.append((None, [single]))
    return sets


def is_hf_folder(path: str) -> bool:
    """Whether ``path`` is a folder with ``config.json`` and a complete weight set (single file or index plus
    every shard it names)."""
    try:
        return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE)) and \
            bool(weight_sets(path))
    except (OSError, ValueError):  # an unreadable or corrupt index is no folder to resize
        return False


@dataclass
class FolderResult:
    """What :func:`resize_folder` wrote: ``applied`` findings (over all shards), ``findings`` of each plan,
    ``resized`` weight files, ``updated`` JSON files, ``copied`` files, ``left_out`` stale weight files, and
    ``dropped`` keys (removed from the index)."""
    dst: str
    applied: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    resized: List[str] = field(default_factory=list)
    updated: List[str] = field(default_factory=list)
    copied: List[str] = field(default_factory=list)
    left_out: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)


def full_view(src: str, shards: List[str]) -> Tuple[ShapeOnlyStateDict, Dict[str, str]]:
    """Shape-only view of every key across ``shards`` (values on demand) and key -> shard."""
    tensors, owner, readers = {}, {}, {}
    for shard in shards:
        state = load_shapes(os.path.join(src, shard)).state_dicts[""]
        read = state.read_tensor if isinstance(state, ShapeOnlyStateDict) else state.__getitem__
        readers[shard] = read
        for key, value in state.items():
            tensors[key] = value
            owner[key] = shard
    return ShapeOnlyStateDict(tensors, lambda key: readers[owner[key]](key)), owner


def _nbytes(t) -> int:
    return t.numel() * t.element_size()


def _write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def _fsync(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _resize_weight_set(src, tmp, index, shards, plan_fn, result: FolderResult) -> None:
    view, _ = full_view(src, shards)
    plan = plan_fn(view)
    result.findings.extend(getattr(plan, "findings", []))
    new_map, size_delta, count_delta = {}, 0, 0
    applied = {}
    for shard in shards:
        ckpt = load_checkpoint(os.path.join(src, shard))
        part = ckpt.state_dicts[""]
        new_part, shard_applied = plan.apply(part)
        for f in shard_applied:
            applied.setdefault(f.key, f)
        for key, value in part.items():
            if key not in new_part:
                result.dropped.append(key)
                size_delta -= _nbytes(value)
                count_delta -= value.numel()
        for key, value in new_part.items():
            old = part.get(key)
            size_delta += _nbytes(value) - (_nbytes(old) if old is not None else 0)
            count_delta += value.numel() - (old.numel() if old is not None else 0)
            new_map[key] = shard
        save_checkpoint(replace_state_dicts(ckpt, {"": new_part}), os.path.join(tmp, shard))
        result.resized.append(shard)
    result.applied.extend(applied.values())
    if index is None:
        return
    with open(os.path.join(src, index)) as f:
        idx = json.load(f)
    old_map = idx.get("weight_map", {})
    # the stored order is kept; keys a plan added go to the shard that produced them, at the end
    idx["weight_map"] = {**{k: v for k, v in old_map.items() if k in new_map},
                         **{k: v for k, v in new_map.items() if k not in old_map}}
    meta = idx.get("metadata")
    if isinstance(meta, dict):
        if isinstance(meta.get("total_size"), int):
            meta["total_size"] += size_delta
        if isinstance(meta.get("total_parameters"), int):
            meta["total_parameters"] += count_delta
    _write_json(os.path.join(tmp, index), idx)
    result.updated.append(index)


def state_dict_plan(new_grid=None, **kwargs) -> Callable:
    """``plan_fn`` for :func:`resize_folder`: :func:`posext.checkpoint.resize.plan_resize` of the view of all
    shards, with the same arguments as ``resize_state_dict``."""
    from .resize import plan_resize

    return lambda view: plan_resize(view, new_grid, **kwargs)


def _is_stale_weights(rel: str) -> bool:
    name = os.path.basename(rel)
    return name.startswith(_STALE_PREFIXES) and name.endswith(_STALE_SUFFIXES) or \
        name.endswith((".onnx", ".gguf")) or name.endswith(".index.json") and name.startswith(_STALE_PREFIXES)


def _check_paths(src: str, dst: str, overwrite: bool) -> None:
    rsrc, rdst = os.path.realpath(src), os.path.realpath(dst)
    if not is_hf_folder(src):
        raise ValueError(f"{src}: not a Hugging Face folder (config.json plus model.safetensors, "
                         f"pytorch_model.bin or a complete sharded index)")
    if rdst == rsrc or rdst.startswith(rsrc + os.sep) or rsrc.startswith(rdst + os.sep):
        raise ValueError(f"{dst}: the output must lie outside the input folder {src} (and not contain it)")
    if any(part.startswith(TEMP_PREFIX) for part in rdst.split(os.sep)):
        raise ValueError(f"{dst}: inside a temp folder of atomic writes ({TEMP_PREFIX}*)")
    if os.path.lexists(dst) and not (overwrite and os.path.isdir(dst) and not os.path.islink(dst)):
        raise FileExistsError(f"{dst} exists" + ("" if overwrite else " (pass overwrite=True to replace it)"))
    if not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
        raise FileNotFoundError(f"{dst}: its parent folder does not exist")


def resize_folder(src: str, dst: str, plan_fn: Callable, *, image_size=None, patch_size=None,
                  num_frames=None, overwrite: bool = False) -> FolderResult:
    """Write the resized copy of the HF folder ``src`` as the new folder ``dst``.

    The plan protocol: ``plan = plan_fn(view)`` is called once per weight set, with ``view`` a shape-only
    mapping of ALL keys across the set's shards (``meta`` tensors; ``view.read_tensor(key)`` reads one
    tensor's values). ``plan.findings`` lists what it found; ``plan.apply(part) -> (new_part, applied)`` is
    then called for each shard's full tensors (a subset of the view's keys), returning the mapping to write
    (keys left out are dropped) and the findings it acted on (objects with ``.key``).

    Each shard is written in its own format (safetensors header metadata kept); an index keeps its
    ``weight_map`` less the dropped keys (keys a plan adds go to their shard) and its ``metadata.total_size``
    (and ``total_parameters``) follows the new tensors. ``config.json`` gets :func:`updated_config` and the
    processor files (``PROCESSOR_FILES``) :func:`updated_preprocessor` when ``image_size`` is given; both are
    computed first, so a refusal writes nothing. Every other file, subfolders included, is copied byte for
    byte (symlinks followed), except weight files of sets not rewritten (TF / Flax / ONNX / GGUF, stray
    ``model*.safetensors``), which would keep old-size tables and are left out (``left_out``).

    Atomic: everything is written into a ``.posext-tmp-<pid>-*`` folder beside ``dst`` and renamed into
    place once complete, so ``dst`` is absent or whole; ``src`` is only read. ``dst`` must not exist unless
    ``overwrite`` (then the old folder is moved aside, the new one renamed in, the old one removed).
    """
    _check_paths(src, dst, overwrite)
    with open(os.path.join(src, CONFIG_FILE)) as f:
        config = json.load(f)
    new_config = None
    if any(v is not None for v in (image_size, patch_size, num_frames)):
        new_config = updated_config(config, image_size=image_size, patch_size=patch_size,
                                    num_frames=num_frames)
    processors = {}
    for name in PROCESSOR_FILES:
        path = os.path.join(src, name)
        if image_size is not None and os.path.isfile(path):
            with open(path) as f:
                pp = json.load(f)
            if any(k in pp for k in ("size", "crop_size") + _NESTED_PROCESSORS):
                processors[name] = updated_preprocessor(pp, image_size, num_frames=num_frames)

    parent = os.path.dirname(os.path.abspath(dst))
    result = FolderResult(dst=dst)
    tmp = lock_fd = None
    try:
        with critical():
            tmp = make_temp_folder(parent)
            lock_fd = lock_folder(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would become the output folder's mode
        sets = weight_sets(src)
        written = {CONFIG_FILE, *processors}
        for index, shards in sets:
            _resize_weight_set(src, tmp, index, shards, plan_fn, result)
            written.update(shards)
            if index is not None:
                written.add(index)
        if new_config is not None:
            _write_json(os.path.join(tmp, CONFIG_FILE), new_config)
            result.updated.append(CONFIG_FILE)
        else:
            shutil.copyfile(os.path.join(src, CONFIG_FILE), os.path.join(tmp, CONFIG_FILE))
            result.copied.append(CONFIG_FILE)
        for name, pp in processors.items():
            _write_json(os.path.join(tmp, name), pp)
            result.updated.append(name)
        _copy_rest(src, tmp, written, result)
        for root, _, files in os.walk(tmp):
            for name in files:
                _fsync(os.path.join(root, name))
        _rename_into_place(tmp, dst, parent, overwrite)
        tmp = None
    finally:
        with critical():
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if lock_fd is not None:
                os.close(lock_fd)
    return result


def _copy_rest(src: str, tmp: str, written, result: FolderResult) -> None:
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith(TEMP_PREFIX))
        rel_root = os.path.relpath(root, src)
        for name in sorted(files):
            rel = name if rel_root == "." else os.path.join(rel_root, name)
            if rel in written:
                continue
            if _is_stale_weights(rel):
                result.left_out.append(rel)
                continue
            target = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(root, name), target)
            shutil.copystat(os.path.join(root, name), target)
            result.copied.append(rel)


def _rename_into_place(tmp: str, dst: str, parent: str, overwrite: bool) -> None:
    aside = None
    with critical():
        if overwrite and os.path.isdir(dst):
            aside = make_temp_folder(parent)
            os.rename(dst, os.path.join(aside, "old"))
        os.rename(tmp, dst)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    try:  # make the rename durable
        fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
