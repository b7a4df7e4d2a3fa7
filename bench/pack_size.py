"""How large is a compact pack of the paper recipe on SD 2.1 (UNet + text encoder fine-tuned)?

(a) ``--layout``: from the real SD 2.1-base shapes (resources/configs/sd21-base.json, models built
    on the meta device, no weights): the bytes of the extracted LoRA with every layer at the rank
    cap (the most a pack can hold, whatever the training did) and with each layer at the rank the
    assumed spectrum needs for the energy.
(b) ``--write``: a real pack from a random SD 2.1-shaped model (fp32 on the CPU, ~10 GB of RAM)
    whose every Linear/Conv2d weight moved by a difference with that spectrum, written by
    ``save_pack`` as ``bas break`` does; prints the file sizes, the stored ranks and the time.

The spectrum: the singular values of the weight difference after ShapesWorld's phase 2
(bench/quality.py --packs, docs/handle-pack.md; median over layers) keep 0.60 / 0.79 / 0.93 of the
squared norm in their top 5 / 10 / 20 % of components. ``relative`` (the default) assumes that
profile in the fraction of a layer's components, s_i^2 ~ exp(-i / (0.065 n)) (0.54 / 0.79 / 0.95),
so wider layers need proportionally higher ranks: the cautious reading for SD 2.1's 320-1280 wide
layers. ``power`` uses the fitted power law s_i ~ (i + 1)^-0.89 instead (ranks independent of width).

    python bench/pack_size.py --layout              # seconds
    python bench/pack_size.py --write -o /tmp/p     # ~10 GB RAM, minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.formats.results import DEFAULT_LORA_ENERGY, DEFAULT_LORA_RANK_CAP  # noqa: E402

TAU = 0.065  # relative spectrum: exp(-i / (TAU n)) for the squared singular values
POWER = 0.89  # median power-law exponent measured on ShapesWorld


def spectrum(n: int, kind: str) -> torch.Tensor:
    """Singular values (descending, largest 1) of an n-component difference of the assumed shape."""
    i = torch.arange(n, dtype=torch.float64)
    return torch.exp(-i / (2 * TAU * n)) if kind == "relative" else (i + 1) ** -POWER


def rank_for(s: torch.Tensor, energy: float, cap: int) -> int:
    """The rank the pack would store: the smallest keeping ``energy``, at most ``cap``."""
    kept = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
    return min(cap, int((kept < energy - 1e-12).sum()) + 1)


def sd21_parts(device: str) -> dict[str, torch.nn.Module]:
    """SD 2.1-base's UNet and text encoder from the shipped config (random init; meta: no memory)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from engine.paths import resources_dir

    cfg = json.loads((resources_dir() / "configs" / "sd21-base.json").read_text())
    te_cfg = {k: v for k, v in cfg["text_encoder"].items() if k not in ("architectures", "torch_dtype")}
    torch.manual_seed(0)
    with torch.device(device):
        return {"unet": UNet2DConditionModel.from_config(cfg["unet"]), "text_encoder": CLIPTextModel(CLIPTextConfig(**te_cfg))}


def layers(module: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """Every Linear/Conv2d layer as (out, in * k * k): what the extraction factors."""
    return {n: (m.weight.shape[0], m.weight[0].numel()) for n, m in module.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}


def layout(energy: float, cap: int, kind: str) -> None:
    parts = sd21_parts("meta")
    total_cap = total_spec = 0
    for part, module in parts.items():
        at_cap = at_spec = 0
        ranks = []
        for out, inp in layers(module).values():
            n = min(out, inp)
            r = rank_for(spectrum(n, kind), energy, cap)
            ranks.append(r)
            at_cap += min(cap, n) * (out + inp) * 2
            at_spec += r * (out + inp) * 2
        full = sum(p.numel() for p in module.parameters()) * 2
        print(f"{part:13s} {len(ranks)} layers, full fp16 {full / 1e6:8.1f} MB | LoRA every layer at cap {cap}: "
              f"{at_cap / 1e6:6.1f} MB | {kind} spectrum at energy {energy}: mean rank {sum(ranks) / len(ranks):.1f}, "
              f"{at_spec / 1e6:6.1f} MB")
        total_cap, total_spec = total_cap + at_cap, total_spec + at_spec
    print(f"{'pack':13s} LoRA at cap: {total_cap / 1e6:.1f} MB (the most any compact SD 2.1 pack holds), "
          f"{kind} spectrum: {total_spec / 1e6:.1f} MB; target <= 200 MB: {'met' if total_cap <= 200e6 else 'NOT met'}")


def write(out: Path, energy: float, cap: int, kind: str, rel_change: float) -> None:
    from engine.example import make_example_scene
    from engine.formats.results import PackStorage, TrainResult
    from engine.models import SDComponents, clip_tokenizer
    from engine.packs.pack import load_pack, save_pack
    from engine.training.config import preset

    t0 = time.perf_counter()
    parts = sd21_parts("cpu")
    tuned: dict[str, dict[str, torch.Tensor]] = {}
    gen = torch.Generator().manual_seed(1)
    for part, module in parts.items():
        state = {k: v.clone() for k, v in module.state_dict().items()}
        for name, (o, i) in layers(module).items():
            n = min(o, i)
            s = spectrum(n, kind).float()
            # U diag(s) V^T with Gaussian U, V (near-orthogonal at these widths), scaled so that
            # ||delta|| = rel_change * ||W||.
            u = torch.randn(o, n, generator=gen) / math.sqrt(o)
            v = torch.randn(n, i, generator=gen) / math.sqrt(i)
            w = state[f"{name}.weight"]
            delta = ((u * s) @ v).reshape(w.shape)
            w += delta * (rel_change * w.norm() / delta.norm())
        tuned[part] = {k: v for k, v in state.items() if "token_embedding" not in k}
    print(f"built the SD 2.1-shaped model and its difference in {time.perf_counter() - t0:.0f} s", flush=True)
    base = SDComponents(unet=parts["unet"], vae=None, text_encoder=parts["text_encoder"],  # type: ignore[arg-type]
                        tokenizer=clip_tokenizer(), scheduler=None, ref="random-sd21-base")
    scene = make_example_scene(size=64)
    handles = {c.token: torch.randn(1024) * 0.01 for c in scene.concepts}
    result = TrainResult(tokens=list(handles), handles=handles, unet_state=tuned["unet"],
                         text_encoder_state=tuned["text_encoder"], lora=None, config=preset("paper"),
                         base_model="random-sd21-base", resolution=512, attention_resolution=16, seconds=0.0)
    t1 = time.perf_counter()
    save_pack(result, scene, out, storage=PackStorage(lora_energy=energy, lora_rank_cap=cap), base=base)
    seconds = time.perf_counter() - t1
    ex = load_pack(out).manifest["phase2"]["extracted"]
    files = {f.name: f.stat().st_size for f in sorted(out.iterdir()) if f.is_file()}
    print(f"wrote {out} in {seconds:.0f} s (extraction + write): "
          + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in files.items()))
    print(f"pack total {sum(files.values()) / 1e6:.1f} MB; {ex['layers']} layers, mean rank {ex['rank_mean']}, "
          f"max {ex['rank_max']}; relative error " + ", ".join(f"{k} {v:.3f}" for k, v in ex["relative_error"].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layout", action="store_true", help="(a) sizes from the real shapes, no weights")
    ap.add_argument("--write", action="store_true", help="(b) write a real pack from a random SD 2.1-shaped model")
    ap.add_argument("-o", "--output", type=Path, help="the pack folder for --write (default: a temporary one)")
    ap.add_argument("--energy", type=float, default=DEFAULT_LORA_ENERGY)
    ap.add_argument("--rank-cap", type=int, default=DEFAULT_LORA_RANK_CAP)
    ap.add_argument("--spectrum", choices=["relative", "power"], default="relative")
    ap.add_argument("--rel-change", type=float, default=1e-3, help="||tuned - base|| / ||base|| per layer")
    args = ap.parse_args()
    if not (args.layout or args.write):
        args.layout = True
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.layout:
        for kind in ("relative", "power"):
            layout(args.energy, args.rank_cap, kind)
    if args.write:
        if args.output is not None:
            write(args.output, args.energy, args.rank_cap, args.spectrum, args.rel_change)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                write(Path(tmp) / "pack", args.energy, args.rank_cap, args.spectrum, args.rel_change)


if __name__ == "__main__":
    main()
