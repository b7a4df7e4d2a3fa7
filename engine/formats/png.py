"""The generation settings a PNG carries: an exact JSON ``bas`` text chunk and A1111's ``parameters``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

SETTINGS_KEY = "bas"
PARAMETERS_KEY = "parameters"


def png_info(settings: dict[str, Any], parameters: str) -> PngImagePlugin.PngInfo:
    """The text chunks for a PNG: ``parameters`` (A1111 convention) and ``bas`` (the exact settings)."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, parameters)
    info.add_text(SETTINGS_KEY, json.dumps(settings))
    return info


def parse_parameters(text: str) -> dict[str, Any]:
    """Parse an A1111 ``parameters`` string into prompt, negative prompt and its key/value pairs."""
    lines = text.strip().split("\n")
    out: dict[str, Any] = {}
    kv_line = lines[-1] if len(lines) > 1 and "Steps:" in lines[-1] else ""
    body = lines[:-1] if kv_line else lines
    neg = [i for i, line in enumerate(body) if line.startswith("Negative prompt:")]
    out["prompt"] = "\n".join(body[: neg[0]] if neg else body)
    if neg:
        out["negative_prompt"] = "\n".join(body[neg[0]:])[len("Negative prompt:"):].strip()
    for part in kv_line.split(", ") if kv_line else []:
        if ": " in part:
            k, v = part.split(": ", 1)
            out[k.strip()] = v.strip()
    return out


def read_png_metadata(path: str | Path) -> dict[str, Any]:
    """The generation settings stored in a PNG (for rebuilding a gallery).

    The ``bas`` chunk when there is one, else the parsed A1111 ``parameters`` text, else ``{}``.
    Raises ``OSError`` when the file is not a readable image.
    """
    with Image.open(path) as im:
        text = dict(getattr(im, "text", {}) or {})
    if SETTINGS_KEY in text:
        try:
            return dict(json.loads(text[SETTINGS_KEY]))
        except (ValueError, TypeError):
            pass
    if PARAMETERS_KEY in text:
        return parse_parameters(text[PARAMETERS_KEY])
    return {}
