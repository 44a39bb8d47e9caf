"""Checkpoint position embeddings: find every grid-dependent tensor of a flat state dict and resize it.

``find_position_embeddings(state_dict)`` -> findings (key, action, layout, old grid, prefix rows, family,
rule, reason); ``resize_state_dict(state_dict, new_grid | image_size=... | patch_size=... | num_frames=...)``
-> (new dict, applied findings); ``plan_resize(...)`` plans from shapes and applies part by part (sharded
files). File I/O and the ``posext inspect`` / ``posext resize`` commands live in ``io.py``, ``hf_folder.py``
and ``commands.py``.
"""
from .detect import ACTIONS, LAYOUTS, AmbiguousGridError, Finding, GridArgumentError, find_position_embeddings
from .geometry import GeometryError
from .resize import SINCOS_POLICIES, Plan, plan_resize, resize_state_dict

__all__ = ["Finding", "AmbiguousGridError", "GridArgumentError", "GeometryError", "find_position_embeddings",
           "resize_state_dict", "plan_resize", "Plan", "ACTIONS", "LAYOUTS", "SINCOS_POLICIES"]
