"""The scene document: a photo, one mask layer per concept, and the undo history.

Plain Python + numpy, no Qt: widgets observe a :class:`Document` through :meth:`Document.subscribe`
and edit it only through its methods, so every change lands in one history.

Masks are uint8 ``HxW`` (0..255, soft edges allowed) at the photo's working resolution. A pixel
edit (a stroke, a fill, a SAM acceptance) is one undo atom that stores the bounding box and the
old and new pixels inside it, zlib-compressed (masks compress ~100x), so hundreds of steps fit
even on a 4000x3000 photo.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol

import numpy as np

from engine.scene import BACKGROUND_COLOR, MASK_THRESHOLD, MAX_HANDLES, PALETTE, Concept, Scene, token_name

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
_uids = itertools.count(1)
TILE = 128
MAX_UNDO_STEPS = 256


def union_rect(a: Rect | None, b: Rect | None) -> Rect | None:
    """The smallest rectangle containing both (None is the empty rectangle)."""
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def clip_rect(r: Rect, width: int, height: int) -> Rect | None:
    """``r`` clipped to the image, or None when nothing is left."""
    x0, y0, x1, y1 = max(0, r[0]), max(0, r[1]), min(width, r[2]), min(height, r[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


@dataclass(eq=False)
class Layer:
    """One concept: its initializer word, overlay colour, visibility and mask."""

    name: str
    color: tuple[int, int, int]
    mask: np.ndarray
    visible: bool = True
    uid: int = field(default_factory=lambda: next(_uids))

    def display_name(self, index: int) -> str:
        """The initializer word, or a placeholder naming the handle when none is set yet."""
        return self.name or f"unnamed {token_name(index)}"

    def coverage(self) -> float:
        """Fraction of the photo the mask covers (thresholded at 0.5)."""
        return float((self.mask >= 128).mean())


@dataclass(eq=False)
class PhotoVersion:
    """An accepted edit of the photo at working resolution; ``png`` caches its encoding for saves."""

    image: np.ndarray
    label: str
    png: bytes | None = None


@dataclass(frozen=True)
class Change:
    """What changed, for observers: ``kind`` is ``pixels``, ``layers``, ``props``, ``active`` or ``history``.

    ``rect`` is the dirty rectangle of a ``pixels`` change (None means everything).
    """

    kind: str
    uid: int | None = None
    rect: Rect | None = None


class Edit(Protocol):
    """One undo atom."""

    label: str

    def undo(self, doc: Document) -> None: ...
    def redo(self, doc: Document) -> None: ...
    def nbytes(self) -> int: ...


@dataclass
class PixelEdit:
    """Pixels of one layer inside ``rect`` before and after (compressed)."""

    label: str
    uid: int
    rect: Rect
    old: bytes
    new: bytes

    def _put(self, doc: Document, data: bytes) -> None:
        x0, y0, x1, y1 = self.rect
        layer = doc.layer_by_uid(self.uid)
        layer.mask[y0:y1, x0:x1] = np.frombuffer(zlib.decompress(data), np.uint8).reshape(y1 - y0, x1 - x0)
        doc.notify(Change("pixels", self.uid, self.rect))

    def undo(self, doc: Document) -> None:
        self._put(doc, self.old)

    def redo(self, doc: Document) -> None:
        self._put(doc, self.new)

    def nbytes(self) -> int:
        return len(self.old) + len(self.new)


@dataclass
class LayerListEdit:
    """The layer list (order, membership) and active layer before and after."""

    label: str
    before: list[Layer]
    after: list[Layer]
    active_before: int
    active_after: int

    def undo(self, doc: Document) -> None:
        doc._set_layers(list(self.before), self.active_before)

    def redo(self, doc: Document) -> None:
        doc._set_layers(list(self.after), self.active_after)

    def nbytes(self) -> int:
        return 0  # removed layers are kept alive by reference; their masks are counted nowhere else


@dataclass
class PropEdit:
    """One attribute (name, colour) of one layer before and after."""

    label: str
    uid: int
    attr: str
    old: object
    new: object

    def undo(self, doc: Document) -> None:
        setattr(doc.layer_by_uid(self.uid), self.attr, self.old)
        doc.notify(Change("props", self.uid))

    def redo(self, doc: Document) -> None:
        setattr(doc.layer_by_uid(self.uid), self.attr, self.new)
        doc.notify(Change("props", self.uid))

    def nbytes(self) -> int:
        return 0


class History:
    """Linear undo/redo stacks of :class:`Edit` atoms, capped at ``max_steps``."""

    def __init__(self, max_steps: int = MAX_UNDO_STEPS) -> None:
        self.max_steps = max_steps
        self.done: list[Edit] = []
        self.undone: list[Edit] = []

    def push(self, edit: Edit) -> None:
        """Record an edit that has already been applied; clears the redo stack."""
        self.done.append(edit)
        self.undone.clear()
        del self.done[:-self.max_steps]

    def nbytes(self) -> int:
        """Memory held by the history (compressed pixels)."""
        return sum(e.nbytes() for e in itertools.chain(self.done, self.undone))


class Stroke:
    """An open pixel edit on one layer; tiles are backed up the first time they are written.

    Call :meth:`region` before writing pixels inside a rectangle, then :meth:`Document.end_stroke`.
    """

    def __init__(self, doc: Document, layer: Layer, label: str) -> None:
        self.doc = doc
        self.layer = layer
        self.label = label
        self.backup: dict[tuple[int, int], np.ndarray] = {}
        self.dirty: Rect | None = None

    def region(self, rect: Rect) -> tuple[Rect, np.ndarray] | None:
        """Back up the tiles under ``rect`` and return the clipped rect and a writable view of it."""
        h, w = self.layer.mask.shape
        r = clip_rect(rect, w, h)
        if r is None:
            return None
        x0, y0, x1, y1 = r
        for ty in range(y0 // TILE, (y1 - 1) // TILE + 1):
            for tx in range(x0 // TILE, (x1 - 1) // TILE + 1):
                if (ty, tx) not in self.backup:
                    self.backup[(ty, tx)] = self.layer.mask[ty * TILE:(ty + 1) * TILE, tx * TILE:(tx + 1) * TILE].copy()
        self.dirty = union_rect(self.dirty, r)
        return r, self.layer.mask[y0:y1, x0:x1]

    def changed(self, rect: Rect) -> None:
        """Tell observers that pixels inside ``rect`` were written."""
        self.doc.notify(Change("pixels", self.layer.uid, rect))

    def old_pixels(self) -> np.ndarray:
        """The pixels of the dirty rectangle as they were before the stroke."""
        assert self.dirty is not None
        x0, y0, x1, y1 = self.dirty
        old = self.layer.mask[y0:y1, x0:x1].copy()
        for (ty, tx), tile in self.backup.items():
            tx0, ty0 = tx * TILE, ty * TILE
            th, tw = tile.shape
            ix0, iy0, ix1, iy1 = max(x0, tx0), max(y0, ty0), min(x1, tx0 + tw), min(y1, ty0 + th)
            if ix0 < ix1 and iy0 < iy1:
                old[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = tile[iy0 - ty0:iy1 - ty0, ix0 - tx0:ix1 - tx0]
        return old


class Document:
    """A photo and its concept layers, with undo history and change observers."""

    def __init__(self, image: np.ndarray, layers: Iterable[Layer] = (), source: Path | None = None,
                 original_size: tuple[int, int] | None = None) -> None:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"photo must be uint8 HxWx3, got {image.dtype} {image.shape}")
        self.image = image
        self.source = source
        self.original_bytes: bytes | None = None  # the photo file as opened, kept for the project
        self.original_name: str | None = None
        self.original_size = original_size or (image.shape[1], image.shape[0])
        self.photo_versions: list[PhotoVersion] = []  # accepted edits, oldest first; the last one is shown
        self.layers: list[Layer] = list(layers)
        self.active = 0 if self.layers else -1
        self.show_background = False
        self.history = History()
        self.stroke: Stroke | None = None
        self.revision = 0  # bumped on every change; autosave and "modified" compare against it
        self._listeners: list[Callable[[Change], None]] = []

    # ----- observing -------------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Working width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Working height in pixels."""
        return int(self.image.shape[0])

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback(change)`` after every change."""
        self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[Change], None]) -> None:
        """Stop calling ``callback``."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def notify(self, change: Change) -> None:
        """Tell the observers about ``change`` (undo atoms call it after they change the document)."""
        if change.kind != "active":
            self.revision += 1
        for cb in list(self._listeners):
            cb(change)

    def record(self, edit: Edit) -> None:
        """Put an edit that is already applied on the undo history (an undo atom from outside this module)."""
        self.history.push(edit)
        self.notify(Change("history"))

    # ----- layers ----------------------------------------------------------------------------
    def layer_by_uid(self, uid: int) -> Layer:
        """The layer with this uid (also a removed one still referenced by the history)."""
        for layer in self.layers:
            if layer.uid == uid:
                return layer
        for edit in itertools.chain(self.history.done, self.history.undone):
            if isinstance(edit, LayerListEdit):
                for layer in itertools.chain(edit.before, edit.after):
                    if layer.uid == uid:
                        return layer
        raise KeyError(f"no layer with uid {uid}")

    @property
    def active_layer(self) -> Layer | None:
        """The layer that tools paint into."""
        return self.layers[self.active] if 0 <= self.active < len(self.layers) else None

    def set_active(self, index: int) -> None:
        """Make layer ``index`` the one tools paint into."""
        if 0 <= index < len(self.layers) and index != self.active:
            self.active = index
            self.notify(Change("active"))

    def _set_layers(self, layers: list[Layer], active: int) -> None:
        self.layers = layers
        self.active = min(active, len(layers) - 1)
        self.notify(Change("layers"))

    def _change_layers(self, label: str, after: list[Layer], active_after: int) -> None:
        edit = LayerListEdit(label, list(self.layers), after, self.active, active_after)
        edit.redo(self)
        self.history.push(edit)
        self.notify(Change("history"))

    def next_color(self) -> tuple[int, int, int]:
        """The first palette colour no layer uses yet."""
        used = {layer.color for layer in self.layers}
        return next((c for c in PALETTE if c not in used), PALETTE[len(self.layers) % len(PALETTE)])

    def add_layer(self, name: str | None = None, mask: np.ndarray | None = None,
                  color: tuple[int, int, int] | None = None) -> Layer:
        """Add a concept above the active one (undoable); raises ValueError past ``MAX_HANDLES``."""
        if len(self.layers) >= MAX_HANDLES:
            raise ValueError(f"at most {MAX_HANDLES} concepts are supported")
        if mask is None:
            mask = np.zeros((self.height, self.width), np.uint8)
        elif mask.shape != (self.height, self.width):
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, photo is {self.width}x{self.height}")
        layer = Layer(name=name or "", color=color or self.next_color(),
                      mask=np.ascontiguousarray(mask, dtype=np.uint8))
        at = self.active + 1 if self.layers else 0
        self._change_layers("Add concept", [*self.layers[:at], layer, *self.layers[at:]], at)
        return layer

    def remove_layer(self, index: int) -> None:
        """Delete concept ``index`` (undoable)."""
        if not 0 <= index < len(self.layers):
            return
        after = [layer for i, layer in enumerate(self.layers) if i != index]
        self._change_layers("Delete concept", after, max(0, min(self.active, len(after) - 1)) if after else -1)

    def move_layer(self, index: int, to: int) -> None:
        """Move concept ``index`` to position ``to`` (undoable); the active layer follows it."""
        to = max(0, min(to, len(self.layers) - 1))
        if index == to or not 0 <= index < len(self.layers):
            return
        after = list(self.layers)
        layer = after.pop(index)
        after.insert(to, layer)
        self._change_layers("Reorder concepts", after, after.index(self.layers[self.active]))

    def set_layer_prop(self, index: int, attr: str, value: object) -> None:
        """Rename (``name``) or recolour (``color``) a concept (undoable)."""
        if attr not in ("name", "color"):
            raise ValueError(f"not an undoable layer property: {attr}")
        layer = self.layers[index]
        old = getattr(layer, attr)
        if old == value:
            return
        edit = PropEdit(f"Change {attr}", layer.uid, attr, old, value)
        edit.redo(self)
        self.history.push(edit)
        self.notify(Change("history"))

    def set_visible(self, index: int, visible: bool) -> None:
        """Show or hide a concept's overlay (a view setting, not undoable)."""
        layer = self.layers[index]
        if layer.visible != visible:
            layer.visible = visible
            self.notify(Change("props", layer.uid))

    def set_show_background(self, on: bool) -> None:
        """Toggle the derived background concept (the complement of all others)."""
        if self.show_background != on:
            self.show_background = on
            self.notify(Change("props"))

    # ----- pixel edits -----------------------------------------------------------------------
    def begin_stroke(self, label: str, layer: Layer | None = None) -> Stroke | None:
        """Open a pixel edit on ``layer`` (default: the active one); None when there is no layer."""
        layer = layer or self.active_layer
        if layer is None:
            return None
        if self.stroke is not None:
            self.end_stroke()
        self.stroke = Stroke(self, layer, label)
        return self.stroke

    def end_stroke(self) -> PixelEdit | None:
        """Close the open edit and record it as one undo step (nothing if no pixel changed)."""
        stroke, self.stroke = self.stroke, None
        if stroke is None or stroke.dirty is None:
            return None
        x0, y0, x1, y1 = stroke.dirty
        old = stroke.old_pixels()
        new = stroke.layer.mask[y0:y1, x0:x1]
        if np.array_equal(old, new):
            return None
        edit = PixelEdit(stroke.label, stroke.layer.uid, stroke.dirty,
                         zlib.compress(old.tobytes(), 1), zlib.compress(new.tobytes(), 1))
        self.history.push(edit)
        self.notify(Change("history"))
        return edit

    def apply_region(self, label: str, rect: Rect, values: np.ndarray, mode: str = "replace",
                     layer: Layer | None = None) -> PixelEdit | None:
        """Write ``values`` (uint8, the rect's shape) into a layer as one undo step.

        ``mode``: ``replace``, ``add`` (max: paint) or ``subtract`` (erase where values are set).
        """
        stroke = self.begin_stroke(label, layer)
        if stroke is None:
            return None
        got = stroke.region(rect)
        if got is not None:
            r, view = got
            v = values[r[1] - rect[1]:r[3] - rect[1], r[0] - rect[0]:r[2] - rect[0]]
            if mode == "add":
                np.maximum(view, v, out=view)
            elif mode == "subtract":
                np.minimum(view, 255 - v, out=view)
            else:
                view[...] = v
            stroke.changed(r)
        return self.end_stroke()

    # ----- history ---------------------------------------------------------------------------
    def can_undo(self) -> bool:
        """True when there is a step to undo."""
        return bool(self.history.done)

    def can_redo(self) -> bool:
        """True when there is a step to redo."""
        return bool(self.history.undone)

    def undo(self) -> str | None:
        """Undo one step; returns its label."""
        if self.stroke is not None:
            self.end_stroke()
        if not self.history.done:
            return None
        edit = self.history.done.pop()
        edit.undo(self)
        self.history.undone.append(edit)
        self.notify(Change("history"))
        return edit.label

    def redo(self) -> str | None:
        """Redo one step; returns its label."""
        if not self.history.undone:
            return None
        edit = self.history.undone.pop()
        edit.redo(self)
        self.history.done.append(edit)
        self.notify(Change("history"))
        return edit.label

    # ----- analysis and conversion -----------------------------------------------------------
    def background_mask(self) -> np.ndarray:
        """The derived background: 255 where no concept reaches 0.5."""
        union = np.zeros((self.height, self.width), bool)
        for layer in self.layers:
            union |= layer.mask >= 128
        return np.where(union, 0, 255).astype(np.uint8)

    def problems(self, max_side: int = 512) -> list[str]:
        """Warnings about the masks: none painted, empty, whole image, overlaps (checked on a thumbnail)."""
        if not self.layers:
            return ["no concepts yet: add a layer and paint over an object"]
        step = max(1, max(self.width, self.height) // max_side)
        small = [layer.mask[::step, ::step] >= round(MASK_THRESHOLD * 255) for layer in self.layers]
        out = []
        names = [layer.display_name(i) for i, layer in enumerate(self.layers)]
        for name, layer, b in zip(names, self.layers, small):
            if not b.any():
                out.append(f"{name}: the mask is empty")
            elif b.all():
                out.append(f"{name}: the mask covers the whole photo; leave some pixels out")
            if not layer.name:
                out.append(f"{name}: no initializer word yet (double-click to name it, e.g. “teddy”)")
        for i in range(len(small)):
            for j in range(i + 1, len(small)):
                inter = int(np.logical_and(small[i], small[j]).sum())
                if inter:
                    share = 100 * inter / max(1, min(int(small[i].sum()), int(small[j].sum())))
                    pct = f"{share:.0f}%" if share >= 1 else "<1%"
                    out.append(f"{names[i]} and {names[j]} overlap ({pct} of the smaller); allowed, "
                               "but they share that part")
        return out

    def to_scene(self) -> Scene:
        """The layers as an engine :class:`Scene` (padded to a square like the engine pads photos)."""
        from engine.scene import pad_to_square

        masks = [layer.mask.astype(np.float32) / 255.0 for layer in self.layers]
        image, masks = pad_to_square(self.image, masks) if self.width != self.height else (self.image, masks)
        concepts = [Concept(mask=m, token=token_name(i), init_word=layer.name or None, color=layer.color)
                    for i, (layer, m) in enumerate(zip(self.layers, masks))]
        scene = Scene(image=image, concepts=concepts, source=self.source)
        return scene.with_background() if self.show_background else scene

    @classmethod
    def from_scene(cls, scene: Scene) -> Document:
        """A document holding a scene's photo and object concepts (the background becomes the toggle)."""
        layers = [Layer(name=c.init_word or "", color=(c.color[0], c.color[1], c.color[2]),
                        mask=(np.clip(c.mask, 0, 1) * 255).round().astype(np.uint8))
                  for c in scene.object_concepts()]
        doc = cls(scene.image, layers, source=scene.source)
        doc.show_background = any(c.is_background for c in scene.concepts)
        return doc


__all__ = ["BACKGROUND_COLOR", "Change", "Document", "History", "Layer", "PhotoVersion", "PixelEdit", "Rect", "Stroke",
           "clip_rect", "union_rect"]
