"""Up-front estimate of a break's time and memory, from a few measured steps of each phase."""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace

import torch

from engine.training.config import TrainConfig
from engine.jobs.events import TrainEvent
from engine.models import SDComponents
from engine.scene import Scene
from engine.training.trainer import BreakTrainer


@dataclass
class RunEstimate:
    """Predicted cost of a full run with the given settings on the given device."""

    phase1_s_per_step: float
    phase2_s_per_step: float
    class_images_s: float
    total_s: float
    peak_memory_bytes: int
    device: str
    note: str


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def estimate_run(scene: Scene, config: TrainConfig, model: str | SDComponents | None,
                 probe_steps: int = 3) -> RunEstimate:
    """Train ``probe_steps`` steps of each phase (the first one is warm-up) and extrapolate.

    The probe runs without prior preservation; class-image generation is estimated separately
    from its step count (one generation step costs about one UNet forward of a phase-1 step,
    times two for classifier-free guidance). Memory is the peak allocated on CUDA, or the peak
    resident size of this process on the CPU/MPS (an upper bound when other work ran before).
    ``model`` should be a reference (the probe adds tokens to the components it trains).
    """
    probe = replace(config, phase1_steps=probe_steps, phase2_steps=probe_steps, prior_preservation=False,
                    checkpoint_every=0, preview_every=0)
    stamps: list[tuple[int, float]] = []

    def on_event(e: TrainEvent) -> None:
        if e.kind == "step":
            stamps.append((e.phase, time.perf_counter()))

    with tempfile.TemporaryDirectory(prefix="bas-estimate-") as work:
        trainer = BreakTrainer(scene, probe, model, work, callback=on_event)
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        trainer.run()
        device = trainer.device.type
    per: dict[int, list[float]] = {1: [], 2: []}
    prev = start
    for phase, t in stamps:
        per[phase].append(t - prev)
        prev = t
    s1 = _steady(per[1])
    s2 = _steady(per[2])
    class_s = 0.0
    if config.prior_preservation:
        class_s = config.num_class_images * config.class_inference_steps * 2 * s1 / 3
    total = config.phase1_steps * s1 + config.phase2_steps * s2 + class_s
    peak = int(torch.cuda.max_memory_allocated()) if device == "cuda" else _peak_rss_bytes()
    note = "" if device != "cpu" else "CPU only: training is slow; a CUDA GPU is 50-100x faster"
    return RunEstimate(s1, s2, class_s, total, peak, device, note)


def _steady(times: list[float]) -> float:
    """Mean step time without the warm-up step (when there is more than one)."""
    timed = times[1:] or times
    return sum(timed) / max(len(timed), 1)
