"""File formats and names, torch-free: what the app reads without loading the engine's torch code.

``manifest`` (a pack's ``pack.json``: names, checks, reader, ``pack_id``), ``png`` (the generation
settings PNGs carry), ``names`` (checkpoint file, default model ids), ``results`` (``TrainResult``,
what a finished break hands to the pack writer). A test checks that importing these pulls in no
torch, diffusers or transformers.
"""
