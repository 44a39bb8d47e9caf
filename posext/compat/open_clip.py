"""open_clip ``model.py: resize_pos_embed`` drop-in (reproduces open_clip 3.3.0, mlfoundations/open_clip).

Rewrites ``state_dict['visual.positional_embedding']`` ([1 + N, C], square old grid) in place for a model
whose ``model.visual.grid_size`` may be non-square. As in open_clip: exactly one prefix (class) token
(open_clip's ``FIXME``), no float32 upcast (posext still computes float16 / bfloat16 in float32),
align_corners=False, and a no-op when the key is missing, when ``model.visual`` has no ``grid_size``, or when
the token count already matches -- the count only, so a square table for an equal-count non-square grid is
left as is, exactly like open_clip. One liberty: open_clip passes align_corners=False even for
``interpolation='nearest'``, which F.interpolate refuses (ValueError); here 'nearest' resamples.
"""
import logging
import math

from ._common import pair, resample_tokens

_logger = logging.getLogger(__name__)


def resize_pos_embed(state_dict, model, interpolation: str = 'bicubic', antialias: bool = True):
    """open_clip ``resize_pos_embed(state_dict, model, interpolation='bicubic', antialias=True)``:
    returns None."""
    old_pos_embed = state_dict.get('visual.positional_embedding', None)
    if old_pos_embed is None or not hasattr(model.visual, 'grid_size'):
        return
    grid_size = pair(model.visual.grid_size)
    extra_tokens = 1
    new_seq_len = grid_size[0] * grid_size[1] + extra_tokens
    if new_seq_len == old_pos_embed.shape[0]:
        return
    old_side = int(math.sqrt(old_pos_embed.shape[0] - extra_tokens))
    old_grid_size = pair(old_side)
    _logger.info('Resizing position embedding grid-size from %s to %s', old_grid_size, grid_size)
    state_dict['visual.positional_embedding'] = resample_tokens(
        old_pos_embed, grid_size, old_size=old_grid_size, num_prefix_tokens=extra_tokens, mode=interpolation,
        antialias=antialias, align_corners=False)


__all__ = ["resize_pos_embed"]
