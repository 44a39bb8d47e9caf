"""What makes a folder a Hugging Face model folder: ``config.json`` and a complete weight set (one file, or
an index and every shard it names). Kept free of torch: the command sorts its inputs before torch loads."""
import json
import os
from typing import Callable, List, Optional, Tuple

CONFIG_FILE = "config.json"
# (index, single file) of each weight set HF writes; a folder may hold both kinds
WEIGHT_SETS = (("model.safetensors.index.json", "model.safetensors"),
               ("pytorch_model.bin.index.json", "pytorch_model.bin"))
# weights no resize rewrites: copied they would be stale tables of the old size, so results leave them out
_STALE_PREFIXES = ("model", "pytorch_model", "tf_model", "flax_model")
_STALE_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".gguf")


def is_stale_weights(rel: str) -> bool:
    """Whether the file ``rel`` of a folder holds weights (or an index of weights) that are stale once the
    folder's weight sets are resized: unless it belongs to a weight set, a result leaves it out."""
    name = os.path.basename(rel)
    return name.startswith(_STALE_PREFIXES) and name.endswith(_STALE_SUFFIXES) or \
        name.endswith((".onnx", ".gguf")) or name.endswith(".index.json") and name.startswith(_STALE_PREFIXES)


def weight_sets_of(has_file: Callable[[str], bool], read_json: Callable[[str], dict]
                   ) -> List[Tuple[Optional[str], List[str]]]:
    """(index file or None, shard file names) of each complete weight set of a folder whose files
    ``has_file(name)`` tells and whose JSON files ``read_json(name)`` parses (a local folder, or a folder in
    a store)."""
    sets = []
    for index, single in WEIGHT_SETS:
        if has_file(index):
            weight_map = read_json(index).get("weight_map", {})
            shards = sorted(set(weight_map.values()))
            if shards and all(has_file(s) for s in shards):
                sets.append((index, shards))
        elif has_file(single):
            sets.append((None, [single]))
    return sets


def weight_sets(folder: str) -> List[Tuple[Optional[str], List[str]]]:
    """(index file or None, shard file names) of each complete weight set in the local ``folder``."""
    def read_json(name):
        with open(os.path.join(folder, name)) as f:
            return json.load(f)

    return weight_sets_of(lambda name: os.path.isfile(os.path.join(folder, name)), read_json)


def is_hf_folder(path: str) -> bool:
    """Whether ``path`` is a folder with ``config.json`` and a complete weight set (single file or index plus
    every shard it names)."""
    try:
        return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_FILE)) and \
            bool(weight_sets(path))
    except (OSError, ValueError):  # an unreadable or corrupt index is no folder to resize
        return False
