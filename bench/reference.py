"""The reference code (google/break-a-scene ``train.py``) against ours on the quality benchmark.

Runs the reference's own trainer on the shipped ShapesWorld model with the ``shapesworld``
preset's values, on the scenes of ``bench/quality.py`` with the same class images, and scores its
output with exactly the benchmark's scoring (:func:`engine.shapesworld.evaluate.score_components`:
same generation seeds, sampler, guidance and judge). Ours' runs are read from the benchmark's
``docs/quality.json`` (arm ``full``); ``ours`` re-runs some of them here to time ours the same way
and to check that training reproduces the benchmark's numbers.

Set up on demand, never in CI, and none of the reference's code enters the project: ``setup``
takes ``train.py`` and ``ptp_utils.py`` from ``--reference`` (a checkout or a bare git repo) or
clones the repository into the cache, writes a shimmed copy (:data:`SHIMS`) there, builds a venv
with the reference's versions (diffusers 0.12.1, transformers 4.28.1, accelerate 0.19.0) and
writes a format-only copy of the model that those versions read (:func:`convert_model`).

    python bench/reference.py setup [--reference PATH]
    python bench/reference.py run --scenes 8 --seeds 1      # reference runs, scored; resumable
    python bench/reference.py ours --scenes 0 1 2 --seeds 1   # ours, timed the same way
    python bench/reference.py report                        # docs/reference.md from the JSON

Everything runs on 1 thread per process (OMP_NUM_THREADS=1), one job at a time. Results go to
``docs/reference_quality.json``; the cache is ``<bas cache>/reference/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REFERENCE_URL = "https://github.com/google/break-a-scene"
REFERENCE_FILES = ("train.py", "ptp_utils.py")
# The reference's versions (its environment.yml era); torch is the project's pin (constraints.txt).
VENV_PINS = ("torch==2.14.1", "torchvision==0.29.1", "diffusers==0.12.1", "transformers==4.28.1",
             "accelerate==0.19.0", "huggingface_hub==0.16.4", "numpy<2", "datasets==2.14.7",
             "tokenizers==0.13.3", "safetensors", "ftfy", "tqdm",
             # what those versions import: pkg_resources (gone in setuptools 81; torch 2.14.1 needs >= 77.0.3),
             # a pyarrow and pandas built for numpy 1
             "setuptools>=77.0.3,<81", "pyarrow<16", "pandas<2.3", "opencv-python-headless<4.11")

# (why, anchor in train.py, replacement, times the anchor must occur). Applied to a copy at setup.
SHIMS: tuple[tuple[str, str, str, int], ...] = (
    ("clone the attention probabilities before the controller edits them in place (under CUDA fp16 "
     "autocast the softmax output is already a cast copy; in fp32 the in-place write breaks backward)",
     "        # one line change\n        self.controller(attention_probs, is_cross, self.place_in_unet)\n",
     "        # one line change\n        attention_probs = attention_probs.clone()  # bas shim\n"
     "        self.controller(attention_probs, is_cross, self.place_in_unet)\n", 1),
    ("resize the masks to the latent size, not a fixed 64x64 (SD at 512 px)",
     "input=max_masks, size=(64, 64)", "input=max_masks, size=tuple(latents.shape[-2:])", 2),
    ("scale latents by the VAE's scaling_factor, not SD's 0.18215",
     "                    latents = latents * 0.18215\n",
     "                    latents = latents * _bas_scaling_factor(self.args.pretrained_model_name_or_path)  # bas shim\n", 1),
    ("read the scaling factor from the model's vae/config.json (diffusers 0.12 has no such config field)",
     "check_min_version(\"0.12.0\")\n",
     "check_min_version(\"0.12.0\")\nimport functools, json as _bas_json, time as _bas_time  # bas shim\n\n\n"
     "@functools.lru_cache(None)\ndef _bas_scaling_factor(model):  # bas shim\n"
     "    return float(_bas_json.loads(Path(model, 'vae', 'config.json').read_text())['scaling_factor'])\n", 1),
    ("time every optimisation step (wall clock between step ends, as ours is timed)",
     "        for epoch in range(first_epoch, self.args.num_train_epochs):\n",
     "        self._bas_times = [_bas_time.perf_counter()]  # bas shim\n"
     "        for epoch in range(first_epoch, self.args.num_train_epochs):\n", 1),
    ("record the step's end",
     "                    global_step += 1\n",
     "                    global_step += 1\n                    self._bas_times.append(_bas_time.perf_counter())  # bas shim\n", 1),
    ("write the step times next to the output",
     "        self.save_pipeline(self.args.output_dir)\n\n        self.accelerator.end_training()\n",
     "        Path(self.args.output_dir, 'bas_step_times.json').write_text(_bas_json.dumps(self._bas_times))\n"
     "        self.save_pipeline(self.args.output_dir)\n\n        self.accelerator.end_training()\n", 1),
)

# Preset field -> how the reference takes it (a flag, or why it cannot).
UNMATCHED = {
    "lora_rank": "the reference has no LoRA (None here: full fine-tuning, as it does)",
    "attention_resolution": "the reference aggregates at 16x16, fixed; ours picks latent/4 (8x8 on this model) since 2026-12-03, 16x16 in the runs of scoring version 1",
    "union_sampling": "always on in the reference (on in the preset)",
    "flip": "always p = 0.5 in the reference (on in the preset)",
    "class_inference_steps": "the class images are ours (20 DDIM steps), given as --class_data_dir",
    "device": "cpu for both", "precision": "fp32 for both (--mixed_precision no)",
    "step_in_backward": "the reference clips the global norm of all UNet + text-encoder gradients; "
                        "ours picks its phase-2 step mode (the run records which)",
    "views_per_step": "run with --train_batch_size 1 (its attention loss reads one instance row); "
                      "ours batches this many views per step (4 in the preset since 2026-12-07), run at 1 "
                      "here as the reference (ONE_VIEW)",
    "class_images_per_step": "the reference pairs each instance image with one class image (unset here: "
                             "one per view, as it does)",
    "lora_lr": "LoRA only", "checkpoint_every": "not a training setting",
    "preview_every": "not a training setting",
}


# The preset as the reference can train it: one view and one class image per step. Both sides of
# the comparison run it (the preset's four views since 2026-12-07 are ours alone).
ONE_VIEW: dict[str, Any] = {"views_per_step": 1, "class_images_per_step": None}


def reference_recipe(seed: int) -> Any:
    """The ``shapesworld`` preset at ``seed`` with :data:`ONE_VIEW`: what both sides train."""
    from engine.training.config import preset

    return preset("shapesworld", seed=seed, **ONE_VIEW)


def cache_root() -> Path:
    """``<bas cache>/reference``: the venv, the shimmed copy, the model copy, the runs."""
    from engine.paths import cache_dir

    return cache_dir() / "reference"


# ------------------------------------------------------------------ the reference's code
def reference_sources(reference: str | None, cache: Path) -> dict[str, str]:
    """``train.py`` and ``ptp_utils.py`` of the reference: from a checkout folder, a bare git repo
    (its HEAD), or a clone of :data:`REFERENCE_URL` made in ``cache`` (a user's machine)."""
    if reference is None:
        clone = cache / "break-a-scene"
        if not clone.exists():
            subprocess.run(["git", "clone", "--depth", "1", REFERENCE_URL, str(clone)], check=True)
        reference = str(clone)
    src = Path(reference)
    if all((src / f).is_file() for f in REFERENCE_FILES):
        return {f: (src / f).read_text(encoding="utf-8") for f in REFERENCE_FILES}
    out = {}
    for f in REFERENCE_FILES:
        got = subprocess.run(["git", "-C", str(src), "show", f"HEAD:{f}"], capture_output=True, text=True)
        if got.returncode:
            raise FileNotFoundError(f"{src}: no {f} in the folder or at the git HEAD ({got.stderr.strip()})")
        out[f] = got.stdout
    return out


def apply_shims(train_py: str, name: str = "train.py") -> str:
    """``train_py`` with every shim of :data:`SHIMS` applied; a missing anchor is a ``ValueError``
    naming the file and the shim (another version of the reference)."""
    for why, old, new, count in SHIMS:
        found = train_py.count(old)
        if found != count:
            raise ValueError(f"{name}: the shim '{why}' expects {count} occurrence(s) of {old.strip()!r}, "
                             f"found {found}: another version of the reference?")
        train_py = train_py.replace(old, new)
    return train_py


def ensure_venv(venv: Path) -> Path:
    """The reference's venv (created with :data:`VENV_PINS` when missing); returns its python."""
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = "import torch, torchvision, diffusers, transformers, accelerate, datasets, cv2; print(diffusers.__version__)"
    if subprocess.run([str(py), "-c", probe], capture_output=True).returncode:
        subprocess.run([str(py), "-m", "pip", "install", *VENV_PINS], check=True)
    return py


# ------------------------------------------------------------------ the model copy
def vae_key_to_reference(key: str) -> str:
    """diffusers >= 0.14 VAE attention names -> 0.12's (``to_q`` -> ``query`` ..., ``to_out.0`` -> ``proj_attn``)."""
    if ".attentions." not in key:
        return key
    for new, old in ((".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")):
        key = key.replace(new, old)
    return key


def text_key_to_reference(key: str) -> str:
    """Our CLIP text-encoder names -> transformers 4.28's (under ``text_model.``)."""
    return key if key.startswith("text_model.") else "text_model." + key


def slow_tokenizer_files(tokenizer_json: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    """``vocab.json`` and the ``merges.txt`` lines of a CLIP BPE ``tokenizer.json`` (what
    transformers 4.28's slow ``CLIPTokenizer`` reads)."""
    model = tokenizer_json["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"tokenizer.json: a {model.get('type')} model, not BPE")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def convert_model(src: Path, dest: Path) -> Path:
    """A format-only copy of a diffusers SD folder that diffusers 0.12 / transformers 4.28 read:
    fp32 weights, the VAE's attention under its old names, the text encoder under
    ``text_model.``, slow-tokenizer files, a model index of 0.12's components. Skipped when
    ``dest`` already holds a copy of the same source (its ``bas_source.json``)."""
    import torch
    from safetensors.torch import load_file, save_file

    stamp = {sub: sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in (src / sub).glob("*"))
             for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")}
    marker = dest / "bas_source.json"
    if marker.exists() and json.loads(marker.read_text()) == {"source": str(src), "files": json.loads(json.dumps(stamp))}:
        return dest
    if dest.exists():
        shutil.rmtree(dest)  # our own cache folder (bas_source.json), rebuilt for a changed model
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub, rename, fname in (("unet", None, "diffusion_pytorch_model.safetensors"),
                               ("vae", vae_key_to_reference, "diffusion_pytorch_model.safetensors"),
                               ("text_encoder", text_key_to_reference, "model.safetensors")):
        files = sorted((src / sub).glob("*.safetensors"))
        if len(files) != 1:
            raise FileNotFoundError(f"{src / sub}: expected one .safetensors file, found {len(files)}")
        sd = load_file(str(files[0]))
        sd = {(rename(k) if rename else k): v.to(torch.float32).contiguous() for k, v in sd.items()}
        (tmp / sub).mkdir(parents=True)
        save_file(sd, str(tmp / sub / fname), metadata={"format": "pt"})  # transformers 4.28 needs it
        cfg = json.loads((src / sub / "config.json").read_text())
        if sub == "text_encoder":
            cfg.pop("dtype", None)
            cfg["torch_dtype"] = "float32"
        (tmp / sub / "config.json").write_text(json.dumps(cfg, indent=2))
    shutil.copytree(src / "scheduler", tmp / "scheduler")
    tok_src = json.loads((src / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    vocab, merges = slow_tokenizer_files(tok_src)
    (tmp / "tokenizer").mkdir()
    (tmp / "tokenizer" / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp / "tokenizer" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tcfg = json.loads((src / "tokenizer" / "tokenizer_config.json").read_text())
    special = {k: tcfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if k in tcfg}
    (tmp / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(
        {**special, "model_max_length": tcfg.get("model_max_length", 77), "tokenizer_class": "CLIPTokenizer",
         "do_lower_case": True, "errors": "replace", "add_prefix_space": False}, indent=2))
    (tmp / "tokenizer" / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (tmp / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.12.1",
        "feature_extractor": [None, None], "safety_checker": [None, None], "requires_safety_checker": False,
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
    (tmp / "bas_source.json").write_text(json.dumps({"source": str(src), "files": stamp}))
    tmp.rename(dest)
    return dest


def setup(reference: str | None, cache: Path, model: str = "shapesworld") -> dict[str, Path]:
    """The shimmed copy, the venv and the model copy; returns their paths."""
    from engine.models import resolve_model

    code = cache / "code"
    code.mkdir(parents=True, exist_ok=True)
    sources = reference_sources(reference, cache)
    (code / "train.py").write_text(apply_shims(sources["train.py"]), encoding="utf-8")
    (code / "ptp_utils.py").write_text(sources["ptp_utils.py"], encoding="utf-8")
    py = ensure_venv(cache / "venv")
    src = Path(resolve_model(model)[1])
    return {"code": code, "python": py, "model": convert_model(src, cache / f"model-{src.name}")}


# ------------------------------------------------------------------ one reference run
# Preset fields the reference takes as a flag (preset_flags); with UNMATCHED, every field.
MAPPED = ("phase1_steps", "phase2_steps", "phase1_lr", "phase2_lr", "lambda_attention", "num_class_images",
          "class_prompt", "prior_weight", "adam_weight_decay", "max_grad_norm", "seed", "resolution",
          "train_text_encoder", "masked_loss", "prior_preservation", "gradient_checkpointing", "use_8bit_adam")


def preset_flags(cfg: Any) -> list[str]:
    """The reference's flags for a :class:`TrainConfig` (see :data:`UNMATCHED` for the rest)."""
    flags = ["--phase1_train_steps", str(cfg.phase1_steps), "--phase2_train_steps", str(cfg.phase2_steps),
             "--initial_learning_rate", repr(cfg.phase1_lr), "--learning_rate", repr(cfg.phase2_lr),
             "--lambda_attention", repr(cfg.lambda_attention), "--num_class_images", str(cfg.num_class_images),
             "--class_prompt", cfg.class_prompt, "--prior_loss_weight", repr(cfg.prior_weight),
             "--adam_weight_decay", repr(cfg.adam_weight_decay), "--max_grad_norm", repr(cfg.max_grad_norm),
             "--seed", str(cfg.seed), "--train_batch_size", "1", "--lr_scheduler", "constant",
             "--mixed_precision", "no", "--report_to", "all", "--checkpointing_steps", "10000000"]
    if cfg.resolution:
        flags += ["--resolution", str(cfg.resolution)]
    if not cfg.train_text_encoder:
        flags.append("--no_train_text_encoder")
    if not cfg.masked_loss:
        flags.append("--do_not_apply_masked_loss")
    if not cfg.prior_preservation:
        flags.append("--no_prior_preservation")
    if cfg.gradient_checkpointing:
        flags.append("--gradient_checkpointing")
    if cfg.use_8bit_adam:
        flags.append("--use_8bit_adam")
    return flags


def write_instance(ws: Any, dest: Path) -> None:
    """The scene as the reference reads it: ``img.jpg`` and ``mask{i}.png``. The image is written
    as PNG bytes (PIL opens by content, so the photo reaches it without JPEG loss)."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ws.scene.image).save(dest / "img.jpg", format="PNG")
    for i, c in enumerate(ws.scene.concepts):
        Image.fromarray((c.binary() * 255).astype("uint8"), mode="L").save(dest / f"mask{i}.png")


def write_class_images(cfg: Any, res: int, dest: Path, model: str = "shapesworld") -> Path:
    """Copy the class images our trainer uses for ``cfg`` (its cache, filled like the trainer fills
    it when missing) into ``dest``, the reference's ``--class_data_dir``."""
    import torch

    from engine.models import load_model
    from engine.training.prior import ensure_class_images

    comps = load_model(model)
    with torch.no_grad():
        paths = ensure_class_images(comps, cfg.class_prompt, cfg.num_class_images, res, cfg.seed,
                                    steps=cfg.class_inference_steps)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for p in paths:
        shutil.copy2(p, dest / p.name)
    return Path(paths[0]).parent


def one_thread_env() -> dict[str, str]:
    """The environment of a measured child: 1 thread, no network."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_child(cmd: list[str], cwd: Path, log: Path) -> tuple[int, float]:
    """Run ``cmd`` to its end; its exit status and peak RSS in GiB (``wait4``'s rusage)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=one_thread_env(), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 2**20


def step_stats(times: list[float], phase1: int) -> dict[str, float]:
    """Median seconds per step of each phase from step-end times (``times[0]`` is the loop's start)."""
    import numpy as np

    d = np.diff(np.array(times))
    return {"phase1_step_s": float(np.median(d[:phase1])) if phase1 else float("nan"),
            "phase2_step_s": float(np.median(d[phase1:])) if len(d) > phase1 else float("nan")}


def load_reference_output(out: Path, ws: Any, model: str = "shapesworld") -> Any:
    """Our :class:`SDComponents` carrying the reference's trained UNet and text encoder (its whole
    token table, handle rows included) from its output pipeline folder."""
    import torch

    from engine.handles import add_handle_tokens
    from engine.models import load_model

    def state(folder: Path) -> dict[str, torch.Tensor]:
        st = sorted(folder.glob("*.safetensors"))
        if st:
            from safetensors.torch import load_file
            return load_file(str(st[0]))
        bins = sorted(folder.glob("*.bin"))
        if not bins:
            raise FileNotFoundError(f"{folder}: no weights (.safetensors or .bin)")
        return torch.load(bins[0], map_location="cpu", weights_only=True)

    comps = load_model(model)
    comps.unet.load_state_dict(state(out / "unet"))
    added = json.loads((out / "tokenizer" / "added_tokens.json").read_text())
    tokens = ws.scene.tokens
    ids = add_handle_tokens(comps.tokenizer, tokens)
    if ids != [added[t] for t in tokens]:
        raise ValueError(f"{out / 'tokenizer'}: handle ids {added} differ from ours {dict(zip(tokens, ids))}")
    te = comps.text_encoder
    te.resize_token_embeddings(len(comps.tokenizer))
    ours = set(te.state_dict())
    sd = {}
    for k, v in state(out / "text_encoder").items():
        name = k if k in ours else k.removeprefix("text_model.")
        if name in ours:
            sd[name] = v
        elif not k.endswith("position_ids"):
            raise ValueError(f"{out / 'text_encoder'}: unknown weight {k}")
    missing = ours - set(sd)
    if missing:
        raise ValueError(f"{out / 'text_encoder'}: missing weights {sorted(missing)[:5]}")
    te.load_state_dict(sd)
    return comps


def reference_run(si: int, seed: int, paths: dict[str, Path], cache: Path, n_scenes: int) -> dict[str, Any]:
    """Train scene ``si`` with the reference (training seed ``si + 100 * seed``) and score it."""
    import torch

    from engine.shapesworld.evaluate import score_components
    from engine.shapesworld.judge import load_judge
    from engine.shapesworld.scenes import benchmark_scenes

    ws = benchmark_scenes(n_scenes, seed=7, loose_px=2)[si]
    cfg = reference_recipe(si + 100 * seed)
    work = cache / "runs" / f"scene{si}-seed{seed}"
    shutil.rmtree(work, ignore_errors=True)
    write_instance(ws, work / "instance")
    res = cfg.resolution or ws.scene.image.shape[0]
    used = write_class_images(cfg, res, work / "class")
    cmd = [str(paths["python"]), "train.py", "--pretrained_model_name_or_path", str(paths["model"]),
           "--instance_data_dir", str(work / "instance"), "--class_data_dir", str(work / "class"),
           "--num_of_assets", str(len(ws.scene.concepts)), "--output_dir", str(work / "out"), *preset_flags(cfg)]
    t0 = time.time()
    rc, peak = run_child(cmd, paths["code"], work / "train.log")
    if rc:
        raise RuntimeError(f"{work / 'train.log'}: the reference exited with {rc}:\n"
                           + (work / "train.log").read_text()[-3000:])
    wall = time.time() - t0
    times = json.loads((work / "out" / "bas_step_times.json").read_text())
    torch.set_num_threads(1)
    comps = load_reference_output(work / "out", ws)
    metrics = score_components(ws, comps, load_judge(), 20, 4.0, seed=1000 * si)
    shutil.rmtree(work / "out" / "vae", ignore_errors=True)  # the unchanged VAE; the trained parts stay
    return {"arm": "reference", "scene": si, "seed": seed, **metrics, **step_stats(times, cfg.phase1_steps),
            "peak_rss_gib": peak, "train_wall_s": wall, "class_images": str(used), "threads": 1}


def ours_child(si: int, seed: int, n_scenes: int, model: str = "shapesworld") -> dict[str, Any]:
    """Ours on scene ``si`` exactly as ``bench/quality.py``'s ``full`` arm, timed per step like the
    reference (wall clock between step ends); run in a child process (``ours``)."""
    import resource
    import tempfile

    import torch

    from engine.jobs.events import TrainEvent
    from engine.shapesworld.evaluate import score_components
    from engine.shapesworld.judge import load_judge
    from engine.shapesworld.scenes import benchmark_scenes
    from engine.training.trainer import BreakTrainer

    torch.set_num_threads(1)
    ws = benchmark_scenes(n_scenes, seed=7, loose_px=2)[si]
    cfg = reference_recipe(si + 100 * seed)
    times: list[float] = []
    notes: list[str] = []

    def on_event(e: TrainEvent) -> None:
        if e.kind.value == "step":
            times.append(time.perf_counter())
        elif e.kind.value == "status" and e.message and (e.message.startswith("phase 2") or "training on" in e.message):
            notes.append(e.message)
            if "training on" in e.message:
                times[:] = [time.perf_counter()]  # the loop starts (setup done)

    t0 = time.time()
    with tempfile.TemporaryDirectory() as work:
        trainer = BreakTrainer(ws.scene, cfg, model, work, callback=on_event)
        trainer.run()
    wall = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    metrics = score_components(ws, trainer.comps, load_judge(), 20, 4.0, seed=1000 * si)
    return {"arm": "ours", "scene": si, "seed": seed, **metrics, **step_stats(times, cfg.phase1_steps),
            "peak_rss_gib": peak, "train_wall_s": wall, "notes": notes, "threads": 1}


# ------------------------------------------------------------------ results and the page
OURS_JSON = ROOT / "docs" / "quality.json"
OUT_JSON = ROOT / "docs" / "reference_quality.json"
METRICS = ("identity", "exact_object", "prompt_fidelity", "prompt_fidelity_extra", "prompt_fidelity_given_handle",
           "leakage", "composition", "best_handle_margin")


REFERENCE_LEVEL_ARM = "attention at 16x16"


def row_scoring(row: dict[str, Any]) -> int:
    """The benchmark scoring version a row was scored by (rows before the field: version 1)."""
    return int(row.get("scoring", 1))


def ours_setup(scoring: int) -> str:
    """The benchmark setup whose ``full`` runs pair with reference rows of this scoring version:
    version 1 rows were compared with ours at 16x16 (then the engine's level on this model), later
    ones with the engine's current level."""
    from bench.quality import engine_attention_side, setup_key

    return setup_key(side=16 if scoring == 1 else engine_attention_side(), scoring=scoring,
                     base=reference_recipe(0))


def load_results(path: Path) -> dict[str, Any]:
    """``{"settings": ..., "runs": [...]}`` of this benchmark (empty when the file is missing)."""
    if not path.exists():
        return {"settings": {}, "runs": []}
    return json.loads(path.read_text())


def save_result(path: Path, row: dict[str, Any], settings: dict[str, Any]) -> None:
    """Add ``row`` (replacing an earlier one of the same arm, scene, seed and scoring) and write atomically."""
    data = load_results(path)
    key = (row["arm"], row["scene"], row["seed"], row_scoring(row))
    runs = [r for r in data["runs"] if (r["arm"], r["scene"], r["seed"], row_scoring(r)) != key]
    runs.append(row)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"settings": settings, "runs": runs}, indent=1))
    tmp.replace(path)


def benchmark_full_rows(path: Path, model_fp: str, setup_key: str,
                        arm: str = "full") -> dict[tuple[int, int], dict[str, Any]]:
    """The benchmark's runs of ``arm`` (``full`` unless told) of this model and setup
    (:func:`ours_setup`), by (scene, seed)."""
    data = json.loads(path.read_text()) if path.exists() else {"runs": []}
    return {(r["scene"], r["seed"]): r for r in data["runs"]
            if r["arm"] == arm and r.get("model") == model_fp and r.get("setup") == setup_key}


def paired_table(ours: dict[tuple[int, int], dict[str, Any]], ref: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: per metric, ours, the reference, and ours minus reference (mean ± s.e., paired)."""
    import numpy as np

    pairs = [(ours[(r["scene"], r["seed"])], r) for r in ref if (r["scene"], r["seed"]) in ours]
    if not pairs:
        return ["(no (scene, seed) has both a reference run and one of ours here yet)"]
    lines = [f"Paired over {len(pairs)} runs (scene, seed): "
             + ", ".join(f"({r['scene']}, {r['seed']})" for _, r in pairs), "",
             "| metric | ours | reference | ours minus reference | beyond 2 s.e. |", "| --- | --- | --- | --- | --- |"]
    for k in METRICS:
        if not all(k in o and k in r for o, r in pairs):
            continue  # a metric of a later scoring version
        a, b = np.array([o[k] for o, _ in pairs]), np.array([r[k] for _, r in pairs])
        d = a - b
        se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("inf")
        verdict = ("ours better" if (d.mean() > 2 * se) != (k == "leakage") else "reference better") \
            if abs(d.mean()) > 2 * se else "no"
        lines.append(f"| {k} | {a.mean():.3f} | {b.mean():.3f} | {d.mean():+.3f} ± {se:.3f} | {verdict} |")
    return lines


def machine_id() -> str:
    """This machine, for the timing table: host name and CPU model (times compare only within one)."""
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return f"{platform.node()} ({cpu or 'unknown CPU'}, {os.cpu_count()} cores)"


def timing_table(rows: list[dict[str, Any]]) -> list[str]:
    """Median per-step seconds of each phase and peak RSS, per arm and machine, over the timed runs.

    Rows from before runs recorded their machine are grouped as one earlier machine."""
    import numpy as np

    lines = ["| trainer | machine | timed runs | phase-1 step (s, median) | phase-2 step (s, median) | peak RSS (GiB, max) |",
             "| --- | --- | --- | --- | --- | --- |"]
    machines = list(dict.fromkeys(r.get("machine", "earlier (not recorded)") for r in rows))
    for m in machines:
        for arm in ("ours", "reference"):
            rs = [r for r in rows if r["arm"] == arm and r.get("machine", "earlier (not recorded)") == m]
            if rs:
                lines.append(f"| {arm} | {m} | {len(rs)} | {np.median([r['phase1_step_s'] for r in rs]):.3f} | "
                             f"{np.median([r['phase2_step_s'] for r in rs]):.3f} | "
                             f"{max(r['peak_rss_gib'] for r in rs):.2f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["setup", "run", "ours", "report", "_ours_child"])
    ap.add_argument("--reference", help="a checkout of google/break-a-scene or a bare git repo of it")
    ap.add_argument("--scenes", type=int, nargs="+", default=list(range(8)), help="scene indices")
    ap.add_argument("--seeds", type=int, default=1, help="run seeds 0 .. N-1")
    ap.add_argument("--n-scenes", type=int, default=8, help="the benchmark's scene count")
    ap.add_argument("--redo", action="store_true", help="run again what is already saved")
    args = ap.parse_args()
    cache = cache_root()
    from bench.quality import SCORING, model_fingerprint

    fp = model_fingerprint()
    settings = {"command": "python bench/reference.py run / ours", "model": fp, "threads": 1, "jobs": 1,
                "preset": "shapesworld", "scenes": "benchmark_scenes(8, seed=7, loose_px=2)",
                "gen_steps": 20, "guidance": 4.0, "shims": [w for w, *_ in SHIMS], "unmatched": UNMATCHED}
    if args.command == "_ours_child":
        print("BAS_RESULT " + json.dumps(ours_child(args.scenes[0], args.seeds, args.n_scenes)))
        return
    if args.command == "report":
        write_report(fp)
        return
    paths: dict[str, Path] = {}
    if args.command in ("setup", "run"):  # retraining ours needs neither the reference nor its venv
        paths = setup(args.reference, cache)
        print({k: str(v) for k, v in paths.items()}, flush=True)
    if args.command == "setup":
        return
    done = {(r["arm"], r["scene"], r["seed"]) for r in load_results(OUT_JSON)["runs"]
            if r.get("model") == fp and row_scoring(r) == SCORING}
    for seed in range(args.seeds):
        for si in args.scenes:
            arm = "reference" if args.command == "run" else "ours"
            if (arm, si, seed) in done and not args.redo:
                continue
            t0 = time.time()
            if arm == "reference":
                row = reference_run(si, seed, paths, cache, args.n_scenes)
            else:
                log = cache / f"ours-scene{si}-seed{seed}.log"
                rc, peak = run_child([sys.executable, str(Path(__file__).resolve()), "_ours_child", "--scenes", str(si),
                                      "--seeds", str(seed), "--n-scenes", str(args.n_scenes)], ROOT, log)
                got = [ln for ln in log.read_text().splitlines() if ln.startswith("BAS_RESULT ")]
                if rc or not got:
                    raise RuntimeError(f"{log}: ours exited with {rc}")
                row = json.loads(got[-1][len("BAS_RESULT "):])
                row["peak_rss_gib_process"] = peak
                bench = benchmark_full_rows(OURS_JSON, fp, ours_setup(SCORING))
                if (si, seed) in bench:
                    row["benchmark_diff"] = {k: row[k] - bench[(si, seed)][k] for k in METRICS}
            row["model"] = fp
            row["scoring"] = SCORING
            row["machine"] = machine_id()
            save_result(OUT_JSON, row, settings)
            print(f"[{time.time() - t0:5.0f}s] {arm} scene {si} seed {seed}: "
                  + " ".join(f"{k}={row[k]:.3f}" for k in (*METRICS, "phase1_step_s", "phase2_step_s", "peak_rss_gib")),
                  flush=True)
    write_report(fp)


def write_report(fp: str, ours_json: Path | None = None) -> None:
    """docs/reference.md: the paired table against the benchmark's ``full`` runs, the timing, the
    shims and the unmatched settings, then docs/reference-notes.md (the findings, by hand)."""
    from bench.quality import SCORING

    data = load_results(OUT_JSON)
    src = ours_json or Path(os.environ.get("BAS_QUALITY_JSON", OURS_JSON))
    versions = sorted({row_scoring(r) for r in data["runs"] if r.get("model") == fp}, reverse=True) or [SCORING]
    tables: list[str] = []
    # The scoring versions differ only in the extra-object images, generated after the others with
    # their own seeds: identity, leakage, composition ... are the same numbers in every version, so
    # older reference rows pair with ours as the engine is now on those metrics.
    for v in versions:  # the current scoring first; older ones stay on the page, labelled
        rows = [r for r in data["runs"] if r.get("model") == fp and row_scoring(r) == v]
        ref = sorted((r for r in rows if r["arm"] == "reference"), key=lambda r: (r["seed"], r["scene"]))
        for key in dict.fromkeys([ours_setup(SCORING), ours_setup(v)]):
            tables += [f"### Reference runs of scoring version {v} against ours: the benchmark's `full` runs of "
                       f"setup `{key}`", ""]
            tables += (paired_table(benchmark_full_rows(src, fp, key), ref) if ref
                       else ["(no reference runs yet: `python bench/reference.py run`)"])
            tables += [""]
        # The reference pulls 16x16 maps, fixed: ours at that level is the benchmark's own arm.
        level = benchmark_full_rows(src, fp, ours_setup(SCORING), arm=REFERENCE_LEVEL_ARM)
        if ref and level and v == SCORING:
            tables += [f"### Reference runs of scoring version {v} against ours at the reference's level: the "
                       f"benchmark's `{REFERENCE_LEVEL_ARM}` runs of setup `{ours_setup(SCORING)}`", ""]
            tables += paired_table(level, ref) + [""]
    table = tables[:-1]
    rows = [r for r in data["runs"] if r.get("model") == fp and row_scoring(r) == versions[0]]
    if not any(r["arm"] == "ours" for r in rows):  # the timing of the latest version that timed ours
        rows = [r for r in data["runs"] if r.get("model") == fp]
    doc = ["# The reference code against ours (ShapesWorld quality benchmark)", "",
           f"Generated by `python bench/reference.py report` from docs/reference_quality.json (reference runs, "
           f"ours re-timed) and the benchmark's `full` runs in docs/{src.name} "
           f"(model `{fp}`, preset `shapesworld`, benchmark_scenes(8, seed=7, loose_px=2), training seed scene + "
           "100 x run seed, generation seed 1000 x scene, 20 DDIM steps, guidance 4.0, the same class images). "
           "Both scored by `engine.shapesworld.evaluate.score_components`. Ours minus reference, mean ± standard "
           "error of the paired difference; for leakage lower is better.", "", *table, "",
           "Time per optimisation step (wall clock between step ends, median over the steps of each phase, "
           "then over runs) and peak RSS of the training process, each alone on 1 thread "
           "(OMP_NUM_THREADS=1), one run at a time, on a shared 2-core machine:", "", *timing_table(rows), "",
           "## How the reference is run", "",
           "google/break-a-scene `train.py` in its own venv (" + ", ".join(VENV_PINS) + "), on a format-only "
           "copy of the model (fp32, the VAE's attention under diffusers 0.12's names, the text encoder under "
           "`text_model.`, slow-tokenizer files), with these shims applied to a copy at setup:", ""]
    doc += [f"- {why}" for why, *_ in SHIMS]
    doc += ["", "Preset values and the reference's flags: " + ", ".join(f"`{m}`" for m in MAPPED)
            + " are passed as its flags (`preset_flags`). Not matched:", ""]
    doc += [f"- `{k}`: {v}" for k, v in UNMATCHED.items()]
    notes = ROOT / "docs" / "reference-notes.md"
    if notes.exists():
        doc += ["", notes.read_text(encoding="utf-8")]
    (ROOT / "docs" / "reference.md").write_text("\n".join(doc) + "\n", encoding="utf-8")
    print("\n".join(table + [""] + timing_table(rows)))


if __name__ == "__main__":
    main()
