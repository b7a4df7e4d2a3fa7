"""``bas batch SCENE... -o OUTDIR``: one break per scene as Ray tasks (engine/cluster/batch.py)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from engine.errors import BasError


def add_command(sub: Any) -> None:
    """Add ``bas batch`` to the ``bas`` subcommands."""
    from engine.cli.main import add_training_options

    b = sub.add_parser("batch", help="break many scenes as Ray tasks, here or on a cluster (pip install '.[cluster]')")
    b.add_argument("scenes", nargs="+", help="scene folders (img.jpg and mask0.png, mask1.png ...)")
    b.add_argument("-o", "--output", required=True,
                   help="folder for the packs: OUTDIR/NAME for each scene folder NAME, logs in OUTDIR/logs")
    b.add_argument("--address", help="Ray cluster: auto, or ray://HOST:10001 (default: Ray on this machine)")
    b.add_argument("--num-gpus", type=float, help="GPUs per break (default: 1 where the cluster has GPUs, else 0)")
    b.add_argument("--retries", type=int, default=2, help="times Ray retries a break whose worker was lost")
    # Ctrl-C leaves each running break's checkpoint in OUTDIR/checkpoints/NAME; the next run resumes it.
    add_training_options(b)
    b.set_defaults(func=batch)


def _names(scenes: list[str]) -> list[str]:
    names = [Path(s).resolve().name or "scene" for s in scenes]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 and names.count(n) == 1 else f"{n}-{seen[n]}")
    return out


class _Log:
    """``OUTDIR/logs/NAME.log``: appended to, never replaced."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, IO[str]] = {}

    def write(self, name: str, text: str) -> None:
        if name not in self.files:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.files[name] = open(self.folder / f"{name}.log", "a", encoding="utf-8")  # noqa: SIM115
        self.files[name].write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.files[name].flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def batch(args: argparse.Namespace) -> int:
    """Run the batch; exit status 0 when every scene has its pack, 2 when one failed, 130 when stopped."""
    from tqdm import tqdm

    from engine.cli.main import break_config, pack_storage
    from engine.cluster.batch import (BatchItem, BatchOutcome, BatchSettings, SceneProgress, finished_pack,
                                      import_ray, run_batch)
    from engine.formats.names import CHECKPOINT_NAME
    from engine.formats.manifest import pack_entries
    from engine.safe_output import check_output_folder
    from engine.scene import load_scene

    import_ray()  # before anything else: without Ray, say how to install it
    config = break_config(args)
    out = Path(args.output)
    log = _Log(out / "logs")
    failed: list[BatchOutcome] = []
    items = []
    for name, folder in zip(_names(args.scenes), args.scenes):
        try:
            if not finished_pack(out, name):
                check_output_folder(out / name, False, pack_entries, "handle pack")
            items.append(BatchItem(name, load_scene(folder)))
        except (BasError, ValueError, OSError) as e:  # one bad scene fails alone, before any training
            failed.append(BatchOutcome(name, "failed", error=" ".join(str(e).split())))
            log.write(name, f"failed: {failed[-1].error}")
    bar = tqdm(total=len(items), unit="scene", dynamic_ncols=True)
    current: dict[str, str] = {}

    def on_progress(p: SceneProgress) -> None:
        e = p.event
        if e.kind == "step":
            current[p.name] = f"phase {e.phase} {e.global_step}/{e.global_total}"
            bar.set_postfix_str(" ".join(f"{n} {s}" for n, s in sorted(current.items())), refresh=True)
            if e.step == e.total or e.global_step % 50 == 0:
                log.write(p.name, f"attempt {p.attempt} phase {e.phase} step {e.global_step}/{e.global_total} "
                          + " ".join(f"{k} {v:.4f}" for k, v in e.losses.items()))
        elif e.kind in ("status", "checkpoint"):
            log.write(p.name, f"attempt {p.attempt} {e.kind}: {e.message}")

    def on_outcome(o: BatchOutcome) -> None:
        current.pop(o.name, None)
        bar.update(1)
        log.write(o.name, f"{o.status} after {o.seconds:.0f} s ({o.attempts} attempt(s))"
                  + (f": {o.error}" if o.error else f", pack {o.pack}" if o.pack else ""))

    stop = {"requested": False}

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        bar.write("stopping every break after its current step (Ctrl-C again to abort now) ...")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        settings = BatchSettings(address=args.address, num_gpus=args.num_gpus, max_retries=args.retries,
                                 storage=pack_storage(args),
                                 checkpoint_path=lambda name: out / "checkpoints" / name / CHECKPOINT_NAME)
        outcomes = run_batch(items, config, out, model=args.model, settings=settings, on_progress=on_progress,
                             on_outcome=on_outcome, should_stop=lambda: stop["requested"]) if items else []
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
        log.close()
    order = {name: i for i, name in enumerate(_names(args.scenes))}
    rows = sorted(outcomes + failed, key=lambda o: order[o.name])
    _summary(rows, sys.stdout)
    if any(o.status == "failed" for o in rows):
        return 2
    return 130 if any(o.status == "cancelled" for o in rows) else 0


def _summary(rows: list[Any], out: IO[str]) -> None:
    """The table at the end: scene, status, time, pack, error."""
    head = ("scene", "status", "time", "pack / error")
    lines = [(o.name, o.status + (f" (attempt {o.attempts})" if o.attempts > 1 else ""),
              f"{o.seconds:.0f} s" if o.seconds else "-", str(o.pack) if o.pack else o.error or "-") for o in rows]
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(3)]
    for r in [head, *lines]:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3], file=out)
