"""Handle packs: the folder format and its loader (``pack``), one-file archives (``archive``) and the
formats other tools load (``interop``). The manifest itself is read by :mod:`engine.formats` (no torch)."""
