"""Shipped data: CLIP tokenizer files, model configs, the offline ShapesWorld model, icons."""
