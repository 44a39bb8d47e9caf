"""Checkpoint position embeddings: find them in a flat state dict and resize them to a new patch grid.

``find_position_embeddings(state_dict)`` -> findings (key, action, layout, old grid, prefix rows, family,
reason); ``resize_state_dict(state_dict, new_grid)`` -> (new dict, applied findings). File I/O and the
``posext inspect`` / ``posext resize`` commands live in ``io.py`` and ``commands.py``.
"""
from .detect import ACTIONS, LAYOUTS, AmbiguousGridError, Finding, GridArgumentError, find_position_embeddings
from .resize import SINCOS_POLICIES, resize_state_dict

__all__ = ["Finding", "AmbiguousGridError", "GridArgumentError", "find_position_embeddings",
           "resize_state_dict", "ACTIONS", "LAYOUTS", "SINCOS_POLICIES"]
