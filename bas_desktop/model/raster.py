"""Pixel algorithms of the tools, on numpy arrays only: brush segments, flood fill, polygons."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from bas_desktop.model.document import Rect


def segment_rect(p0: tuple[float, float], p1: tuple[float, float], radius: float) -> Rect:
    """The pixel rectangle a brush segment of ``radius`` from ``p0`` to ``p1`` can touch."""
    r = radius + 1
    return (int(np.floor(min(p0[0], p1[0]) - r)), int(np.floor(min(p0[1], p1[1]) - r)),
            int(np.ceil(max(p0[0], p1[0]) + r)) + 1, int(np.ceil(max(p0[1], p1[1]) + r)) + 1)


def segment_alpha(rect: Rect, p0: tuple[float, float], p1: tuple[float, float], radius: float,
                  hardness: float) -> np.ndarray:
    """Coverage (uint8) of a round brush dragged from ``p0`` to ``p1`` over the pixels of ``rect``.

    Computed as the distance of each pixel centre to the segment (a capsule), so a stroke has no
    dab spacing artefacts at any speed. ``hardness`` in [0, 1]: the fraction of the radius at full
    strength; the rest falls off smoothly to 0 at the rim.
    """
    x0, y0, x1, y1 = rect
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    xs += 0.5
    ys += 0.5
    ax, ay = p0
    dx, dy = p1[0] - ax, p1[1] - ay
    seg2 = dx * dx + dy * dy
    if seg2 > 1e-9:
        t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / seg2, 0.0, 1.0)
        px, py = ax + t * dx, ay + t * dy
    else:
        px, py = ax, ay
    dist = np.sqrt((xs - px) ** 2 + (ys - py) ** 2)
    radius = max(radius, 0.5)
    inner = radius * float(np.clip(hardness, 0.0, 1.0))
    if radius - inner < 0.75:  # a hard brush still gets one pixel of anti-aliasing
        inner = max(0.0, radius - 0.75)
    u = np.clip((radius - dist) / max(radius - inner, 1e-6), 0.0, 1.0)
    u = u * u * (3 - 2 * u)  # smoothstep
    return (u * 255).round().astype(np.uint8)


def flood_region(candidate: np.ndarray, seed: tuple[int, int]) -> np.ndarray | None:
    """The 4-connected component of ``candidate`` (bool HxW) that contains ``seed`` (x, y).

    A scanline fill: each step fills a whole horizontal run with numpy, so the cost grows with the
    number of runs, not pixels (a 4000x3000 convex region fills in a few ms).
    """
    h, w = candidate.shape
    x, y = seed
    if not (0 <= x < w and 0 <= y < h) or not candidate[y, x]:
        return None
    filled = np.zeros_like(candidate, dtype=bool)
    stack = [(x, y)]
    while stack:
        x, y = stack.pop()
        if filled[y, x] or not candidate[y, x]:
            continue
        row = candidate[y]
        left_stops = np.flatnonzero(~row[:x][::-1])
        left = x - left_stops[0] if left_stops.size else 0
        right_stops = np.flatnonzero(~row[x:])
        right = x + right_stops[0] if right_stops.size else w
        filled[y, left:right] = True
        for ny in (y - 1, y + 1):
            if 0 <= ny < h:
                seg = candidate[ny, left:right] & ~filled[ny, left:right]
                if seg.any():
                    starts = np.flatnonzero(seg & ~np.concatenate(([False], seg[:-1])))
                    stack.extend((left + int(s), ny) for s in starts)
    return filled


def colour_candidate(image: np.ndarray, seed: tuple[int, int], tolerance: int) -> np.ndarray:
    """Pixels whose colour is within ``tolerance`` (max channel difference, 0..255) of the seed's."""
    ref = image[seed[1], seed[0]].astype(np.int16)
    return (np.abs(image.astype(np.int16) - ref).max(axis=2) <= tolerance)


def bbox_of(mask: np.ndarray) -> Rect | None:
    """Bounding rectangle of the non-zero pixels of ``mask``."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def polygon_mask(points: list[tuple[float, float]], width: int, height: int) -> tuple[Rect, np.ndarray] | None:
    """Rasterize a closed polygon: its clipped bounding rect and uint8 coverage inside it."""
    if len(points) < 3:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, y0 = max(0, int(np.floor(min(xs)))), max(0, int(np.floor(min(ys))))
    x1, y1 = min(width, int(np.ceil(max(xs))) + 1), min(height, int(np.ceil(max(ys))) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    img = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(img).polygon([(px - x0, py - y0) for px, py in points], fill=255, outline=255)
    return (x0, y0, x1, y1), np.asarray(img, dtype=np.uint8).copy()


OVERLAY_ALPHA = 0.5
BACKGROUND_ALPHA = 0.35


def composite_overlay(layers: list[tuple[np.ndarray, tuple[int, int, int], bool]], background: bool,
                      background_color: tuple[int, int, int], rect: Rect, out: np.ndarray) -> None:
    """Blend translucent layer colours over ``rect`` into ``out`` (HxWx4 uint8, premultiplied BGRA).

    ``layers`` are ``(mask, colour, visible)`` bottom to top; with ``background`` the complement of
    all masks (hidden ones included) is drawn first. The layout matches ``QImage.Format_ARGB32_Premultiplied`` on little-endian machines.
    """
    x0, y0, x1, y1 = rect
    h, w = y1 - y0, x1 - x0
    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    stack = []
    if background:
        union = np.zeros((h, w), bool)
        for m, _, _ in layers:
            union |= m[y0:y1, x0:x1] >= 128
        stack.append((np.where(union, 0, 255).astype(np.uint8), background_color, BACKGROUND_ALPHA))
    stack += [(m[y0:y1, x0:x1], c, OVERLAY_ALPHA) for m, c, vis in layers if vis]
    for mask, colour, strength in stack:
        if not mask.any():
            continue
        a = mask.astype(np.float32) * (strength / 255.0)
        keep = 1.0 - a
        rgb *= keep[..., None]
        rgb += a[..., None] * np.asarray(colour, np.float32)
        alpha *= keep
        alpha += a
    view = out[y0:y1, x0:x1]
    view[..., 0] = rgb[..., 2]
    view[..., 1] = rgb[..., 1]
    view[..., 2] = rgb[..., 0]
    view[..., 3] = alpha * 255.0
