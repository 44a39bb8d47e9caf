"""What makes a folder a Hugging Face model folder: ``config.json`` and a complete weight set (one file, or
an index and every shard it names). Kept free of torch: the command sorts its inputs before torch loads."""
import json
import os
from typing import List, Optional, Tuple

CONFIG_FILE = "config.json"
# (index, single file) of each weight set HF writes; a folder may hold both kinds
WEIGHT_SETS = (("model.safetensors.index.json", "model.safetensors"),
               ("pytorch_model.bin.index.json", "pytorch_model.bin"))


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
