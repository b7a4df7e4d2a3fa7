"""``SamSession``: encode a photo once (cached), then click-to-mask through the ONNX decoder, or suggest masks.

Threading: ``set_image`` and ``suggest`` are slow and meant for a worker thread; ``predict`` is fast and
may be called from any thread, also while another image is being encoded (it keeps using the previous
image until the new embedding is ready).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from engine.sam.cache import EmbeddingCache, image_key
from engine.sam.errors import SamError, SamWeightsMissing
from engine.sam.models import ModelManager
from engine.sam.onnx_decoder import OnnxDecoder, load_or_export
from engine.sam.progress import CancelFlag, ProgressCallback, ProgressEvent, check_cancel, emit
from engine.sam.specs import CACHE_FORMAT, ModelSpec, build_random, get_spec, load_sam

Point = tuple[float, float]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Prediction:
    """Result of one click/box prompt.

    ``mask`` is bool (H, W) in original image pixels; ``score`` SAM's predicted IoU of it. ``scores`` and
    ``low_res_logits`` (C, 256, 256) hold all candidates (C=3 with multimask, else 1); ``index`` is the
    chosen one. Pass ``low_res_logits[index]`` as ``mask_input`` of the next ``predict`` to refine.
    """

    mask: np.ndarray
    score: float
    index: int
    scores: np.ndarray
    low_res_logits: np.ndarray


@dataclass(frozen=True)
class Suggestion:
    """One automatically found mask: bool (H, W) ``mask``, SAM's predicted IoU ``score``, ``stability``,
    ``area`` in pixels and ``bbox`` (x0, y0, x1, y1), exclusive end, in original image pixels."""

    mask: np.ndarray
    score: float
    stability: float
    area: int
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class _ImageState:
    key: str
    image: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    embedding: np.ndarray


def _check_image(image: object, source: str | Path | None) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise SamError(f"image must be a numpy array, got {type(image).__name__}", source)
    if image.dtype != np.uint8:
        raise SamError(f"image must be uint8 RGB, got dtype {image.dtype}", source)
    if image.ndim != 3 or image.shape[2] != 3:
        raise SamError(f"image must be an H x W x 3 RGB array, got shape {image.shape}", source)
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise SamError(f"image is too small ({image.shape[1]}x{image.shape[0]} pixels)", source)
    return image


class SamSession:
    """One SAM model: a torch image encoder, an onnxruntime decoder and an embedding cache.

    Build it with ``SamSession.open`` (finds the weights through a ``ModelManager``); the constructor takes
    an already built ``segment_anything.modeling.Sam``.
    """

    def __init__(self, sam: Sam, spec: ModelSpec, model_id: str, manager: ModelManager | None = None,
                 threads: int | None = None, memory_items: int = 4, disk_items: int = 64) -> None:
        """Wrap a built ``Sam``; exports (or reuses) its ONNX decoder under ``manager.onnx_dir``.

        ``model_id`` must change whenever the weights change: it keys the ONNX file and the embeddings.
        ``threads`` sets onnxruntime's intra-op threads (default: CPU count, max 8).
        """
        self.sam = sam.eval()
        self.spec = spec
        self.model_id = model_id
        self.manager = manager or ModelManager()
        self.img_size = int(sam.image_encoder.img_size)
        self._transform = ResizeLongestSide(self.img_size)
        emb_h, emb_w = sam.prompt_encoder.image_embedding_size
        self.embedding_shape = (1, int(sam.prompt_encoder.embed_dim), int(emb_h), int(emb_w))
        onnx_path = self.manager.onnx_dir / f"{model_id}.decoder.v{CACHE_FORMAT}.onnx"
        self.decoder: OnnxDecoder = load_or_export(sam, onnx_path, model_id, threads)
        self._onnx_path = onnx_path
        self.cache = EmbeddingCache(self.manager.embeddings_dir / model_id, self.embedding_shape,
                                    memory_items, disk_items)
        #: How many times the image encoder really ran (cache hits do not count).
        self.encoder_runs = 0
        self._state: _ImageState | None = None
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, spec: ModelSpec | str = "vit_b", manager: ModelManager | None = None,
             weights: str | Path | None = None, *, random_weights: bool = False, seed: int = 0,
             threads: int | None = None, progress_cb: ProgressCallback | None = None) -> "SamSession":
        """Load ``spec`` (name or ModelSpec) from ``weights`` or the manager's cache and export its decoder.

        ``random_weights=True`` (and always for the weight-less ``tiny`` spec) builds a seeded random model:
        for tests and benches only. Raises SamError naming the file when weights are missing or unusable.
        Slow for real models (seconds to load, ~2 s first ONNX export): call from a worker thread.
        """
        spec = get_spec(spec) if isinstance(spec, str) else spec
        manager = manager or ModelManager()
        path = None if random_weights else (Path(weights) if weights is not None else manager.weights_path(spec))
        if path is None:
            if random_weights or not spec.url:
                return cls(build_random(spec, seed), spec, f"{spec.name}-random{seed}", manager, threads)
            raise SamWeightsMissing(f"SAM {spec.name} weights are not downloaded yet; download them or pick "
                                    "the file", manager.default_path(spec))
        digest = manager.file_sha256(path, progress_cb)
        return cls(load_sam(spec, path), spec, f"{spec.name}-{digest[:16]}", manager, threads)

    def configure_decoder(self, threads: int | None = None, spinning: bool = False) -> None:
        """Re-open the ONNX decoder session with other onnxruntime thread settings (no re-export)."""
        self.decoder = OnnxDecoder(self._onnx_path, self.model_id, threads, spinning)

    # ------------------------------------------------------------------ image
    @property
    def has_image(self) -> bool:
        """True once ``set_image`` finished at least once."""
        return self._state is not None

    @property
    def embedding(self) -> np.ndarray | None:
        """The current image's (1, C, h, w) float32 embedding (None before ``set_image``); do not modify."""
        state = self._state
        return state.embedding if state else None

    @property
    def image_key(self) -> str | None:
        """Content hash of the current image (None before ``set_image``)."""
        state = self._state
        return state.key if state else None

    def set_image(self, image: np.ndarray, progress_cb: ProgressCallback | None = None,
                  cancel_flag: CancelFlag = None, source: str | Path | None = None) -> str:
        """Make ``image`` (H x W x 3 uint8 RGB) current, running the encoder only on a cache miss.

        Reports ``ProgressEvent("encode", blocks_done, blocks_total, "blocks")``; raises ``Cancelled`` between
        encoder blocks once ``cancel_flag`` is set (the previous image stays current). ``source`` only names
        the photo in error messages. Returns the image key. Runs torch in the caller's thread.
        """
        image = _check_image(image, source).copy()  # suggest() reads it later; the caller may reuse its buffer
        image.flags.writeable = False
        key = image_key(image)
        encoded = False
        original_size = (int(image.shape[0]), int(image.shape[1]))
        input_size = self._transform.get_preprocess_shape(original_size[0], original_size[1], self.img_size)
        embedding = self.cache.get(key)
        if embedding is None:
            with self._encode_lock:  # two workers encoding at once would only double the memory peak
                embedding = self.cache.get(key)
                if embedding is None:
                    embedding = self._encode(image, progress_cb, cancel_flag)
                    self.cache.put(key, embedding)
                    encoded = True
        if not encoded:
            emit(progress_cb, ProgressEvent("encode", 1, 1, "blocks", "cached"))
        with self._lock:
            self._state = _ImageState(key, image, original_size, tuple(input_size), embedding)
        return key

    def _encode(self, image: np.ndarray, progress_cb: ProgressCallback | None,
                cancel_flag: CancelFlag) -> np.ndarray:
        encoder = self.sam.image_encoder
        total = len(encoder.blocks) + 1
        check_cancel(cancel_flag, "image encoding")
        emit(progress_cb, ProgressEvent("encode", 0, total, "blocks"))
        done = [0]

        def after_block(_module, _inputs, _output) -> None:
            done[0] += 1
            emit(progress_cb, ProgressEvent("encode", done[0], total, "blocks"))
            check_cancel(cancel_flag, "image encoding")

        resized = self._transform.apply_image(image)
        x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
        hooks = [block.register_forward_hook(after_block) for block in encoder.blocks]
        try:
            with torch.inference_mode():
                features = encoder(self.sam.preprocess(x))
        finally:
            for hook in hooks:
                hook.remove()
        self.encoder_runs += 1
        emit(progress_cb, ProgressEvent("encode", total, total, "blocks"))
        return np.ascontiguousarray(features.numpy(), np.float32)

    def _current(self) -> _ImageState:
        with self._lock:
            state = self._state
        if state is None:
            raise SamError("no image set: call set_image() before predict() or suggest()")
        return state

    # ------------------------------------------------------------------ click to mask
    def predict(self, points: Sequence[Point] = (), labels: Sequence[int] = (), box: Box | None = None,
                multimask: bool | None = None, mask_input: np.ndarray | None = None) -> Prediction:
        """Mask for the prompts on the current image, all coordinates in original image pixels (x, y).

        ``labels``: 1 = this is the object, 0 = this is not. ``box``: (x0, y0, x1, y1), any corner order.
        ``multimask``: SAM proposes 3 masks and the best-scored is returned (best for a single click);
        False returns SAM's single mask (better once there are several points or a box); None (default)
        picks True for exactly one point without box, else False. ``mask_input``: a previous
        ``Prediction.low_res_logits[index]`` to refine. Only the chosen mask is upsampled.
        """
        state = self._current()
        coords, codes = self._prompt_arrays(points, labels, box, state)
        if mask_input is not None:
            mask_input = np.asarray(mask_input, np.float32)
            if mask_input.size != self.decoder.low_res_shape[0] * self.decoder.low_res_shape[1]:
                raise SamError(f"mask_input must be {self.decoder.low_res_shape} low-res logits, "
                               f"got shape {mask_input.shape}")
        scores, logits = self.decoder.run(state.embedding, coords, codes, mask_input)
        if multimask is None:
            multimask = len(points) == 1 and box is None
        # Same choice as SamPredictor: token 0 is the single-mask output, tokens 1..3 the multimask ones.
        keep = slice(1, None) if multimask else slice(0, 1)
        scores, logits = scores[keep], logits[keep]
        index = int(np.argmax(scores))
        mask = self._upscale(logits[index], state)
        return Prediction(mask, float(scores[index]), index, scores.copy(), logits.copy())

    def mask_from_logits(self, low_res_logits: np.ndarray) -> np.ndarray:
        """Upsample one (256, 256) candidate of ``Prediction.low_res_logits`` to a bool mask of the current
        image (the one the prediction was made on: call before the next ``set_image``)."""
        return self._upscale(np.asarray(low_res_logits, np.float32), self._current())

    def _upscale(self, logits: np.ndarray, state: _ImageState) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(logits))[None, None]
        with torch.inference_mode():
            up = self.sam.postprocess_masks(t, state.input_size, state.original_size)
        return (up[0, 0] > self.sam.mask_threshold).numpy()

    def _prompt_arrays(self, points: Sequence[Point], labels: Sequence[int], box: Box | None,
                       state: _ImageState) -> tuple[np.ndarray, np.ndarray]:
        pts = np.asarray(points, np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
        lab = np.asarray(labels, np.int64).reshape(-1) if len(labels) else np.zeros((0,), np.int64)
        if len(pts) != len(lab):
            raise SamError(f"{len(pts)} points but {len(lab)} labels")
        if len(pts) == 0 and box is None:
            raise SamError("give at least one point or a box")
        if not np.isin(lab, (0, 1)).all():
            raise SamError(f"point labels must be 1 (object) or 0 (not object), got {sorted(set(lab.tolist()))}")
        if not np.isfinite(pts).all():
            raise SamError("point coordinates must be finite numbers")
        coords = self._transform.apply_coords(pts, state.original_size) if len(pts) else pts
        codes = lab.astype(np.float32)
        if box is not None:
            b = np.asarray(box, np.float64).reshape(-1)
            if b.size != 4 or not np.isfinite(b).all():
                raise SamError(f"box must be four finite numbers (x0, y0, x1, y1), got {box!r}")
            x0, x1 = sorted((b[0], b[2]))
            y0, y1 = sorted((b[1], b[3]))
            if x1 - x0 < 1 or y1 - y0 < 1:
                raise SamError(f"box {tuple(b.tolist())} is empty")
            corners = self._transform.apply_boxes(np.array([[x0, y0, x1, y1]]), state.original_size).reshape(2, 2)
            coords = np.concatenate([coords, corners])
            codes = np.concatenate([codes, np.array([2, 3], np.float32)])
        else:
            # SAM was trained with a "not a point" token when no box is given (SamPredictor does the same).
            coords = np.concatenate([coords, np.zeros((1, 2))])
            codes = np.concatenate([codes, np.array([-1], np.float32)])
        return coords.astype(np.float32), codes.astype(np.float32)

    # ------------------------------------------------------------------ suggestions
    def suggest(self, points_per_side: int = 16, points_per_batch: int = 16, pred_iou_thresh: float = 0.86,
                stability_score_thresh: float = 0.92, box_nms_thresh: float = 0.7,
                min_area_fraction: float = 0.001, max_masks: int = 32, work_side: int = 1024,
                progress_cb: ProgressCallback | None = None, cancel_flag: CancelFlag = None) -> list[Suggestion]:
        """Candidate object masks of the current image, best predicted IoU first (for "Suggest concepts").

        Runs segment_anything's ``SamAutomaticMaskGenerator`` on the cached embedding (no re-encoding) with a
        ``points_per_side``² grid, decoding through the onnxruntime decoder. The generator scores masks at
        image resolution, so images larger than ``work_side`` are processed at that size and the masks
        scaled back (keeps memory ~200 MB).
        Reports ``ProgressEvent("suggest", batches_done, batches_total, "batches")``; ``Cancelled`` between
        batches. Slow (seconds for vit_b): call from a worker thread.
        """
        if points_per_side < 1 or points_per_batch < 1:
            raise SamError("points_per_side and points_per_batch must be at least 1")
        state = self._current()
        h, w = state.original_size
        if max(h, w) > work_side:
            work = ResizeLongestSide(work_side).apply_image(state.image)
        else:
            work = state.image
        total = -(-points_per_side ** 2 // points_per_batch)
        generator = SamAutomaticMaskGenerator(
            self.sam, points_per_side=points_per_side, points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
            box_nms_thresh=box_nms_thresh, crop_n_layers=0, output_mode="binary_mask")
        generator.predictor = _EmbeddingPredictor(self.sam, self.decoder, state, total, pred_iou_thresh,
                                                 progress_cb, cancel_flag)
        emit(progress_cb, ProgressEvent("suggest", 0, total, "batches"))
        with torch.inference_mode():
            records = generator.generate(work)
        out = []
        for rec in records:
            mask = rec["segmentation"]
            if mask.shape != (h, w):
                t = torch.from_numpy(mask.astype(np.uint8))[None, None]
                mask = torch.nn.functional.interpolate(t, size=(h, w), mode="nearest")[0, 0].numpy().astype(bool)
            area = int(mask.sum())
            if area == 0 or area < min_area_fraction * h * w:
                continue
            ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
            bbox = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
            out.append(Suggestion(mask, float(rec["predicted_iou"]), float(rec["stability_score"]), area, bbox))
        out.sort(key=lambda s: (-s.score, -s.area))
        return out[:max_masks]


class _EmbeddingPredictor(SamPredictor):
    """Stands in for ``SamPredictor`` inside ``SamAutomaticMaskGenerator``: ``set_image`` adopts the cached
    embedding instead of running the encoder again, and point batches go through the onnxruntime decoder
    (torch's batched decoder measured ~8x slower per prompt on 2 cores). Reports progress, honours cancel."""

    def __init__(self, sam: Sam, decoder: OnnxDecoder, state: _ImageState, total: int, pred_iou_thresh: float,
                 progress_cb: ProgressCallback | None, cancel_flag: CancelFlag) -> None:
        super().__init__(sam)
        self._bas_decoder = decoder
        # The generator drops every mask with predicted IoU <= this right after predict_torch, before
        # looking at its pixels, so those masks are not upsampled (most of the per-batch time).
        self._bas_min_iou = pred_iou_thresh if pred_iou_thresh > 0.0 else -float("inf")
        self._bas_state = state
        self._bas_total = total
        self._bas_progress = progress_cb
        self._bas_cancel = cancel_flag
        self.batches_done = 0

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Adopt the session's embedding; ``image`` only gives the size masks are returned at."""
        self.reset_image()
        self.original_size = tuple(image.shape[:2])
        self.input_size = self._bas_state.input_size
        self.features = torch.from_numpy(self._bas_state.embedding)
        self.is_image_set = True

    def predict_torch(self, point_coords: torch.Tensor | None, point_labels: torch.Tensor | None,
                      boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                      multimask_output: bool = True,
                      return_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Same contract as ``SamPredictor.predict_torch`` for point prompts (B x N x 2, input frame)."""
        check_cancel(self._bas_cancel, "mask suggestion")
        if boxes is not None or mask_input is not None or point_coords is None:
            result = super().predict_torch(point_coords, point_labels, boxes, mask_input,
                                           multimask_output, return_logits)
        else:
            keep = slice(1, None) if multimask_output else slice(0, 1)
            pad_xy, pad_label = np.zeros((1, 2), np.float32), np.array([-1], np.float32)
            scores, logits = [], []
            assert point_labels is not None  # point prompts come with their labels (SamPredictor's contract)
            for coords, labels in zip(point_coords.numpy(), point_labels.numpy()):
                s, m = self._bas_decoder.run(self._bas_state.embedding, np.concatenate([coords, pad_xy]),
                                             np.concatenate([labels.astype(np.float32), pad_label]))
                scores.append(s[keep])
                logits.append(m[keep])
            low_res, iou = torch.from_numpy(np.stack(logits)), torch.from_numpy(np.stack(scores))
            wanted = iou > self._bas_min_iou
            masks = torch.zeros((*iou.shape, *self.original_size))
            if wanted.any():
                up = self.model.postprocess_masks(low_res[wanted][:, None], self.input_size, self.original_size)
                masks[wanted] = up[:, 0]
            if not return_logits:
                masks = masks > self.model.mask_threshold
            result = masks, iou, low_res
        self.batches_done += 1
        emit(self._bas_progress, ProgressEvent("suggest", self.batches_done, self._bas_total, "batches"))
        return result
