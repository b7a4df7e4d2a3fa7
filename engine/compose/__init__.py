"""Composing with handles: generation from a pack (``generate``) and local editing by example (``edit``)."""
