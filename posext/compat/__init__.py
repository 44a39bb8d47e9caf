"""Drop-in replacements for peers' position-embedding helpers, with their signatures and numerics."""
