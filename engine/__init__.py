"""Break-A-Scene engine: scenes, model loading, the two-phase trainer, handle packs, generation.

Pure torch + diffusers; nothing here imports Qt, so the CLI, the app and a GPU server share it.
"""

__version__ = "0.1.0"
