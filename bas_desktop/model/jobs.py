"""The app's jobs: plain functions ``fn(inputs, report, should_stop)`` over plain dataclasses.

No Qt here: they run on a lane of the app's :class:`~bas_desktop.workers.JobRunner`, from a test
or from the self-test. A break is :func:`engine.jobs.breaking.run_break`, as in ``bas break``;
torch and diffusers are imported inside the functions so that importing this module (at app
start) stays fast. Progress goes out as :class:`~engine.jobs.events.JobMessage` of kind
``progress``; its ``result`` carries the payload (a ``TrainEvent``, a ``GalleryEntry`` ...).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bas_desktop.model.gallery_store import GalleryEntry
from bas_desktop.model.project_data import ProjectData
from engine.jobs.events import EventKind, JobMessage, MessageKind, Report, StopCheck, TrainEvent

if TYPE_CHECKING:  # pragma: no cover - for type hints only
    from engine.devices import DeviceInfo
    from engine.training.config import TrainConfig
    from engine.scene import Scene


_LABELS = {"quick": "Quick", "paper": "Paper", "shapesworld": "ShapesWorld", "low-vram": "Low VRAM", "sdxl": "SDXL"}


def _preset_names() -> dict[str, str]:
    from engine.training.config import PRESETS  # plain dataclasses, no torch

    known = [n for n in _LABELS if n in PRESETS] + [n for n in PRESETS if n not in _LABELS]
    return {_LABELS.get(n, n): n for n in known}


PRESET_NAMES: dict[str, str] = _preset_names()  # UI label -> engine preset: every preset the engine has


def preset_label(name: str) -> str:
    """The UI label of an engine preset name."""
    return next((label for label, n in PRESET_NAMES.items() if n == name), name)


def _msg(job: str, text: str = "", fraction: float | None = None, result: Any = None) -> JobMessage:
    return JobMessage(job, MessageKind.PROGRESS, text, fraction, result)


def devices_job(inputs: None, report: Report, should_stop: StopCheck) -> DeviceInfo:
    """The devices this torch build can use (:func:`engine.devices.device_info`; imports torch)."""
    from engine.devices import device_info

    return device_info()


def make_config(preset_label: str, device: str, **overrides: Any) -> TrainConfig:
    """The engine config for a UI preset label ("Quick", "Paper", "ShapesWorld", "Low VRAM") and device."""
    from engine.training.config import preset

    name = PRESET_NAMES.get(preset_label, preset_label)
    return preset(name, device=device, **overrides)


# ------------------------------------------------------------------------------------ estimate
@dataclass
class EstimateInputs:
    """A scene, the settings and the model to measure a few steps of."""

    scene: Scene
    config: TrainConfig
    model: str
    probe_steps: int = 3


def estimate_job(inputs: EstimateInputs, report: Report, should_stop: StopCheck) -> Any:
    """Measure a few steps of each phase and extrapolate (engine/training/estimate.py)."""
    from engine.training.estimate import estimate_run

    report(_msg("estimate", f"measuring {inputs.probe_steps} steps of each phase ..."))
    return estimate_run(inputs.scene, inputs.config, inputs.model, probe_steps=inputs.probe_steps)


def format_estimate(est: Any) -> str:
    """One line: time and peak memory of a :class:`engine.training.estimate.RunEstimate`."""
    t = est.total_s
    when = f"{t:.0f} s" if t < 90 else (f"{t / 60:.0f} min" if t < 5400 else f"{t / 3600:.1f} h")
    gib = est.peak_memory_bytes / 2 ** 30
    mem = f"{gib:.1f} GiB" if gib >= 1 else f"{est.peak_memory_bytes / 2 ** 20:.0f} MiB"
    kind = "GPU memory" if est.device == "cuda" else "RAM"
    text = f"about {when} on {est.device}, peak {kind} about {mem}"
    return text + (f" ({est.note})" if est.note else "")


# ------------------------------------------------------------------------------------ training
@dataclass
class TrainInputs:
    """One break: the scene, the settings, where the project's data lives."""

    scene: Scene
    config: TrainConfig
    model: str
    data: ProjectData
    resume: bool = False
    preset: str = "Quick"
    preview_steps: int = 20  # denoising steps of the per-handle preview images after training
    cluster: str | None = None  # None: this computer; else a Ray address ("" starts Ray here)
    full_weights: bool = False  # store a full fine-tune's tensors instead of the extracted LoRA


@dataclass
class PreviewImage:
    """The preview of one handle (``a photo of <assetN>``), sent when it is ready."""

    token: str
    image: np.ndarray


@dataclass
class LossHistory:
    """The losses of the steps before a resume (so the chart shows the whole run)."""

    points: list[tuple[int, dict[str, float]]]


@dataclass
class TrainOutcome:
    """What a break left: the pack (finished) or the checkpoint (cancelled)."""

    pack_dir: Path | None
    cancelled_at: int | None = None
    checkpoint: Path | None = None
    previews: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


def train_job(inputs: TrainInputs, report: Report, should_stop: StopCheck) -> TrainOutcome:
    """Run a break (:func:`engine.jobs.breaking.run_break`); every ``TrainEvent`` goes out as a progress message.

    Cancel writes a checkpoint (the trainer's) and returns with ``cancelled_at`` set; a finished
    run writes the pack, deletes the checkpoint and renders one preview per handle.
    """
    from engine.jobs.breaking import BreakRequest, run_break

    data = inputs.data.ensure()
    if not inputs.resume:
        data.clear_run()
    data.write_run({"preset": inputs.preset, "model": inputs.model, "config": inputs.config.to_dict()})

    losses_file = data.work_dir / "losses.json"
    points: list[tuple[int, dict[str, float]]] = []
    if inputs.resume:
        try:
            points = [(int(s), dict(v)) for s, v in json.loads(losses_file.read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError):
            points = []
        if points:
            report(_msg("train", "earlier losses", None, LossHistory(points)))

    def on_event(e: TrainEvent) -> None:
        if e.kind == EventKind.STEP:
            points.append((e.global_step, dict(e.losses)))
        elif e.kind == EventKind.CHECKPOINT:  # the losses up to the checkpoint, for the chart after a resume
            kept = [p for p in points if p[0] <= e.global_step]
            losses_file.write_text(json.dumps(kept), encoding="utf-8")
        frac = e.global_step / e.global_total if e.global_total else None
        report(_msg("train", e.message or str(e.kind), frac, e))

    t0 = time.perf_counter()
    from engine.formats.results import PackStorage

    request = BreakRequest(inputs.scene, inputs.config, data.pack_dir, model=inputs.model, work_dir=data.work_dir,
                           resume=inputs.resume, force=True, storage=PackStorage(full_weights=inputs.full_weights))
    if inputs.cluster is not None:
        from engine.cluster.batch import run_break_on_cluster

        result = run_break_on_cluster(request, inputs.cluster or None, on_event, should_stop)
    else:
        result = run_break(request, on_event, should_stop)
    if result.cancelled_at is not None:
        if result.checkpoint is not None:
            losses_file.write_text(json.dumps([p for p in points if p[0] <= result.cancelled_at]), encoding="utf-8")
        return TrainOutcome(None, result.cancelled_at, result.checkpoint, seconds=time.perf_counter() - t0)
    data.clear_run()
    _PACK_MODELS.clear()
    previews: dict[str, np.ndarray] = {}
    if inputs.preview_steps > 0:
        from engine.compose.generate import generate

        comps = pack_model(data.pack_dir, inputs.config.device)
        for tok in result.tokens:
            if should_stop():
                break
            got = generate(comps, f"a photo of {tok}", seed=0, steps=inputs.preview_steps, guidance=7.5)
            previews[tok] = np.asarray(got[0].image)
            report(_msg("train", f"preview of {tok}", None, PreviewImage(tok, previews[tok])))
    return TrainOutcome(data.pack_dir, previews=previews, seconds=time.perf_counter() - t0)


# ------------------------------------------------------------------------------- model cache
_PACK_MODELS: dict[tuple[str, str, float], Any] = {}


def pack_model(pack_dir: Path, device: str = "auto") -> Any:
    """The base model with the pack applied, cached (one entry) across jobs on the worker thread."""
    from engine.devices import pick_device
    from engine.compose.generate import load_pack_model
    from engine.packs.pack import load_pack

    dev = pick_device(device)
    key = (str(pack_dir), str(dev), (Path(pack_dir) / "pack.json").stat().st_mtime)
    if key not in _PACK_MODELS:
        _PACK_MODELS.clear()
        pack = load_pack(pack_dir)
        comps = load_pack_model(pack, device=dev)
        _PACK_MODELS[key] = (comps, pack)
    return _PACK_MODELS[key][0]


def pack_model_loaded(pack_dir: Path, device: str = "auto") -> bool:
    """True when :func:`pack_model` would reuse the loaded model (same pack, unchanged, same device)."""
    try:
        mtime = (Path(pack_dir) / "pack.json").stat().st_mtime
    except OSError:
        return False
    return any(k[0] == str(pack_dir) and k[2] == mtime and (device == "auto" or k[1].startswith(device))
               for k in _PACK_MODELS)


def _loaded_pack(pack_dir: Path, device: str) -> tuple[Any, Any]:
    pack_model(pack_dir, device)
    return next(iter(_PACK_MODELS.values()))


# ------------------------------------------------------------------------------------ gallery
@dataclass
class GenerateInputs:
    """A gallery request: ``mode`` is ``prompt``, ``variations`` or ``background``."""

    pack_dir: Path
    gallery_dir: Path
    prompt: str = ""
    n: int = 1
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int = 30
    guidance: float = 7.5
    mode: str = "prompt"
    templates: tuple[str, ...] = ("a photo of {} at the beach", "a photo of {} in the snow")
    device: str = "auto"
    scheduler: str = "ddim"


def _entry(img: Any, gallery_dir: Path, kind: str, group: str, label: str = "") -> GalleryEntry:
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}.png"
    img.save(gallery_dir / name)
    return GalleryEntry(file=name, prompt=img.prompt, seed=img.seed, steps=img.steps, guidance=img.guidance,
                        scheduler=img.scheduler, kind=kind, group=group, label=label,
                        created=time.time(), params=img.metadata())


def generate_job(inputs: GenerateInputs, report: Report, should_stop: StopCheck) -> list[GalleryEntry]:
    """Generate and stream each finished image as a progress message carrying its gallery entry."""
    from engine.compose.generate import background_token, generate, handle_subsets, object_tokens

    if not pack_model_loaded(inputs.pack_dir, inputs.device):
        report(_msg("generate", "Loading the model (once; it stays loaded for the next requests) ..."))
    comps, pack = _loaded_pack(inputs.pack_dir, inputs.device)
    inputs.gallery_dir.mkdir(parents=True, exist_ok=True)
    group = uuid.uuid4().hex[:8]
    jobs: list[tuple[str, int, str]] = []  # prompt, seed, label
    if inputs.mode == "prompt":
        if not inputs.prompt.strip():
            raise ValueError("the prompt is empty: type a prompt or click a handle chip")
        jobs = [(inputs.prompt, s, "") for s in inputs.seeds]
    elif inputs.mode == "variations":
        for subset in handle_subsets(object_tokens(pack)):
            for t in inputs.templates:
                jobs.append((t.format(" and ".join(subset)), inputs.seeds[0], " + ".join(subset)))
    elif inputs.mode == "background":
        bg = background_token(pack)
        jobs = [(f"a photo of {bg}", s, "background") for s in inputs.seeds]
    else:
        raise ValueError(f"unknown gallery mode {inputs.mode!r}")
    out: list[GalleryEntry] = []
    for i, (prompt, seed, label) in enumerate(jobs):
        if should_stop():
            break

        def on_step(k: int, n: int, i: int = i) -> None:
            report(_msg("generate", f"image {i + 1}/{len(jobs)}", (i + k / n) / len(jobs)))

        got = generate(comps, prompt, seed=seed, steps=inputs.steps, guidance=inputs.guidance,
                       scheduler=inputs.scheduler, pack=pack, should_stop=should_stop, on_step=on_step)
        if not got:
            break
        entry = _entry(got[0], inputs.gallery_dir, inputs.mode, group, label)
        out.append(entry)
        report(_msg("generate", f"image {i + 1}/{len(jobs)} done", (i + 1) / len(jobs), entry))
    return out


# ------------------------------------------------------------------------------------ local edit
@dataclass
class EditInputs:
    """A local edit: put ``token`` into ``region`` of ``image``; ``n`` candidates with seeds seed..seed+n-1."""

    pack_dir: Path
    gallery_dir: Path
    image: np.ndarray
    region: np.ndarray  # bool or [0, 1] float, the photo's size
    token: str
    n: int = 3
    seed: int = 0
    steps: int = 30
    strength: float = 0.8
    guidance: float = 7.5
    device: str = "auto"


@dataclass
class EditCandidate:
    """One edited photo, with its gallery entry."""

    image: np.ndarray
    entry: GalleryEntry


def edit_job(inputs: EditInputs, report: Report, should_stop: StopCheck) -> list[EditCandidate]:
    """Blended latent diffusion (engine/compose/edit.py), one candidate per seed, streamed as they finish."""
    from engine.compose.edit import blended_edit

    comps, pack = _loaded_pack(inputs.pack_dir, inputs.device)
    inputs.gallery_dir.mkdir(parents=True, exist_ok=True)
    prompt = f"a photo of {inputs.token}"
    group = uuid.uuid4().hex[:8]
    out: list[EditCandidate] = []
    for i in range(inputs.n):
        if should_stop():
            break

        def on_step(k: int, n: int, i: int = i) -> None:
            report(_msg("edit", f"candidate {i + 1}/{inputs.n}", (i + k / n) / inputs.n))

        res = blended_edit(comps, inputs.image, inputs.region.astype(np.float32), prompt, strength=inputs.strength,
                           steps=inputs.steps, seed=inputs.seed + i, guidance=inputs.guidance, pack=pack,
                           should_stop=should_stop, on_step=on_step)
        if res is None:
            break
        cand = EditCandidate(np.asarray(res.result.image), _entry(res.result, inputs.gallery_dir, "edit", group,
                                                                  f"edit: {inputs.token}"))
        out.append(cand)
        report(_msg("edit", f"candidate {i + 1}/{inputs.n} done", (i + 1) / inputs.n, cand))
    return out


# ------------------------------------------------------------------------------------ packs
@dataclass
class ExportInputs:
    """Export the project's pack: ``formats`` from ``pack`` (our format), ``diffusers``, ``a1111``, ``kohya``."""

    pack_dir: Path
    out_dir: Path
    formats: list[str]
    rank: int = 16


def export_job(inputs: ExportInputs, report: Report, should_stop: StopCheck) -> list[Path]:
    """Write the chosen formats under ``out_dir``; returns the written paths."""
    from engine.packs.pack import load_pack

    if not inputs.formats:
        raise ValueError("choose at least one export format")
    pack = load_pack(inputs.pack_dir)
    written: list[Path] = []
    if "pack" in inputs.formats:
        report(_msg("export", "copying the handle pack", 0.1))
        dest = inputs.out_dir / "pack"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(inputs.pack_dir, dest)
        written.append(dest)
    interop = [f for f in inputs.formats if f != "pack"]
    if interop:
        from engine.packs.interop import export_pack

        report(_msg("export", f"exporting {', '.join(interop)}", 0.5))
        written += export_pack(pack, inputs.out_dir, interop, rank=inputs.rank, force=True)["files"]
    return written
