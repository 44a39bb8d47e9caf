"""Drop-in acceleration of position-embedding work inside existing models (timm, open_clip, Hugging Face).

Each integration module has ``accelerate(model)`` and ``unpatch(model)``: patching replaces, on the module
instances only, the method that resizes and adds the position embedding; ``unpatch`` removes those instance
attributes, leaving the model exactly as it was. Numerics follow each library's own resize settings.
"""
