"""SAM's prompt encoder + mask decoder exported to ONNX and run with onnxruntime (the per-click path).

We export through ``segment_anything.utils.onnx.SamOnnxModel`` (its traceable point/mask embedding) but
return all four low-resolution mask logits and scores: the caller picks the mask exactly like
``SamPredictor`` does and upsamples only that one, which is most of the per-click saving.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import torch

from engine.sam.errors import SamError
from engine.sam.specs import CACHE_FORMAT

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

INPUT_NAMES = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"]
OUTPUT_NAMES = ["iou_predictions", "low_res_masks"]
OPSET = 17


def _export_module(sam: Sam) -> torch.nn.Module:
    from segment_anything.utils.onnx import SamOnnxModel

    class DecoderExport(SamOnnxModel):
        """Prompt encoding + mask decoding only; no selection and no upsampling inside the graph."""

        @torch.no_grad()
        def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
            sparse = self._embed_points(point_coords, point_labels)
            dense = self._embed_masks(mask_input, has_mask_input)
            masks, scores = self.model.mask_decoder.predict_masks(
                image_embeddings=image_embeddings,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )
            return scores, masks

    return DecoderExport(sam, return_single_mask=False).eval()


def export_decoder(sam: Sam, path: Path, model_id: str) -> Path:
    """Export ``sam``'s decoder to ``path`` (atomically), tagging it with ``model_id`` and the cache format."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = _export_module(sam)
    dim = sam.prompt_encoder.embed_dim
    emb_h, emb_w = sam.prompt_encoder.image_embedding_size
    low_h, low_w = 4 * emb_h, 4 * emb_w
    img = sam.image_encoder.img_size
    dummy = (
        torch.randn(1, dim, emb_h, emb_w),
        torch.randint(0, img, (1, 5, 2), dtype=torch.float32),
        torch.tensor([[1, 0, 2, 3, -1]], dtype=torch.float32),
        torch.randn(1, 1, low_h, low_w),
        torch.tensor([1], dtype=torch.float32),
    )
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python scalars are expected here
            torch.onnx.export(
                module, dummy, tmp,
                input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )
        model = onnx.load(tmp)
        for key, value in (("bas_model_id", model_id), ("bas_cache_format", str(CACHE_FORMAT))):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def session_options(threads: int | None = None, spinning: bool = False) -> ort.SessionOptions:
    """onnxruntime options tuned for one small latency-bound graph on a desktop CPU.

    Full graph optimisation (fusions, constant folding of the dense positional encoding), sequential
    execution (the graph is a chain; inter-op parallelism only adds scheduling), and intra-op threads =
    CPU count by default, capped at 8. ``spinning`` False: idle ORT threads sleep instead of busy-waiting,
    which would steal the cores from torch's mask upsampling right after each run (see bench/sam_click.py).
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads if threads else min(8, max(1, (os.cpu_count() or 2)))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return opts


class OnnxDecoder:
    """A warm onnxruntime session of the exported decoder; ``run`` is thread-safe."""

    def __init__(self, path: Path, model_id: str, threads: int | None = None, spinning: bool = False) -> None:
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=session_options(threads, spinning),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise SamError(f"cannot load ONNX decoder ({type(exc).__name__}: {str(exc)[:200]})", path) from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("bas_model_id") != model_id or meta.get("bas_cache_format") != str(CACHE_FORMAT):
            raise SamError(f"ONNX decoder was exported for {meta.get('bas_model_id')!r}, not {model_id!r}", path)
        names = [i.name for i in self.session.get_inputs()]
        if names != INPUT_NAMES:
            raise SamError(f"ONNX decoder has inputs {names}, expected {INPUT_NAMES}", path)
        shape = self.session.get_inputs()[3].shape
        self.low_res_shape = (int(shape[2]), int(shape[3]))
        self.embedding_shape = tuple(int(d) for d in self.session.get_inputs()[0].shape)

    def run(self, embedding: np.ndarray, coords: np.ndarray, labels: np.ndarray,
            mask_input: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Decode one prompt set. ``coords`` (N,2) in the model's 1024-frame, ``labels`` (N,) float with
        SAM's codes (1 fg, 0 bg, 2/3 box corners, -1 padding). Returns scores (4,) and logits (4,h,w)."""
        if mask_input is None:
            mask = np.zeros((1, 1, *self.low_res_shape), np.float32)
            has_mask = np.zeros(1, np.float32)
        else:
            mask = np.ascontiguousarray(mask_input, np.float32).reshape(1, 1, *self.low_res_shape)
            has_mask = np.ones(1, np.float32)
        feeds = {
            "image_embeddings": embedding,
            "point_coords": np.ascontiguousarray(coords, np.float32)[None],
            "point_labels": np.ascontiguousarray(labels, np.float32)[None],
            "mask_input": mask,
            "has_mask_input": has_mask,
        }
        scores, masks = self.session.run(OUTPUT_NAMES, feeds)
        return scores[0], masks[0]


def load_or_export(sam: Sam, path: Path, model_id: str, threads: int | None = None,
                   spinning: bool = False) -> OnnxDecoder:
    """Open the cached decoder at ``path``; export it first if missing, unreadable or for another model."""
    path = Path(path)
    if path.is_file():
        try:
            return OnnxDecoder(path, model_id, threads, spinning)
        except SamError:
            path.unlink(missing_ok=True)  # corrupt or stale: our own cache file, rebuild it
    export_decoder(sam, path, model_id)
    return OnnxDecoder(path, model_id, threads, spinning)
