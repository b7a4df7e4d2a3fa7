"""``bas-desktop --self-test``: start the app's widgets headless and run a short break end to end.

Used on a fresh install and on the packaged one-folder app: it proves that Qt, torch, diffusers,
the shipped resources and the engine all load from the bundle. It trains a two-object synthetic
scene for a few steps on the offline model ("shapesworld"; the tiny test model when the offline
one is not installed), generates one image from the result, prints a JSON summary and exits 0.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _scene_document(size: int) -> Any:
    import numpy as np

    from bas_desktop.model.document import Document, Layer

    img = np.full((size, size, 3), 235, np.uint8)
    sq = np.zeros((size, size), np.uint8)
    sq[size // 8:size // 2, size // 8:size // 2] = 255
    yy, xx = np.ogrid[:size, :size]
    disk = (((xx - 0.7 * size) ** 2 + (yy - 0.7 * size) ** 2) <= (0.18 * size) ** 2).astype(np.uint8) * 255
    img[sq > 0] = (220, 40, 40)
    img[disk > 0] = (40, 70, 220)
    return Document(img, [Layer("square", (230, 25, 75), sq), Layer("circle", (60, 180, 75), disk)])


def run_self_test(model: str | None = None, steps: int = 3, work: Path | None = None) -> dict[str, Any]:
    """Run the self-test and return its summary (raises on any failure)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0 = time.perf_counter()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from bas_desktop.model import jobs
    from engine.formats import names
    from bas_desktop.model.project_data import ProjectData
    from bas_desktop.widgets.studio import StudioWindow

    model = model or (names.OFFLINE_MODEL if names.offline_model_available() else names.TINY_MODEL)
    window = StudioWindow()  # builds every panel, as the app does
    ui_s = time.perf_counter() - t0
    tmp = tempfile.TemporaryDirectory(prefix="bas-selftest-") if work is None else None
    root = Path(tmp.name) if tmp is not None else Path(work)  # type: ignore[arg-type]
    try:
        data = ProjectData(root / "selftest.data").ensure()
        doc = _scene_document(64)
        window.open_project(doc, data, model)
        events: list[str] = []
        cfg = jobs.make_config("Quick", "auto", phase1_steps=steps, phase2_steps=steps, checkpoint_every=0,
                               preview_every=steps)
        outcome = jobs.train_job(jobs.TrainInputs(doc.to_scene(), cfg, model, data, preview_steps=2),
                                 lambda m: events.append(getattr(m.result, "kind", "preview-image")), lambda: False)
        if outcome.pack_dir is None or not data.has_pack():
            raise RuntimeError("the break produced no pack")
        gen = jobs.generate_job(jobs.GenerateInputs(data.pack_dir, data.gallery_dir, "a photo of <asset0>", 1, [0], 2),
                                lambda m: None, lambda: False)
        summary = {"ok": True, "model": model, "train_steps": cfg.total_steps, "events": sorted(set(events)),
                   "previews": sorted(outcome.previews), "generated": len(gen), "ui_start_s": round(ui_s, 2),
                   "total_s": round(time.perf_counter() - t0, 2), "frozen": bool(getattr(sys, "frozen", False))}
    finally:
        window.close()
        app.processEvents()
        if tmp is not None:
            tmp.cleanup()
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: prints the summary as JSON; exit code 0 on success, 1 on failure."""
    argv = list(sys.argv[1:] if argv is None else argv)
    model = argv[argv.index("--model") + 1] if "--model" in argv else None
    try:
        print(json.dumps(run_self_test(model)), flush=True)
    except Exception as e:  # noqa: BLE001 - report any failure plainly
        import traceback

        traceback.print_exc()
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
