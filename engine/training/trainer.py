"""The two-phase Break-A-Scene trainer.

Phase 1 trains only the new handle embeddings (model frozen, lr 5e-4); phase 2 trains the UNet
(full weights, or a peft LoRA), by default the text encoder, and the handles (lr 2e-6). Every step
draws a random non-empty subset of concepts ("a photo of <asset0> and <asset2>"), flips the photo
half of the time, and minimises

    masked diffusion loss (inside the union of the named concepts' masks)
  + prior weight * plain diffusion loss on a cached class image ("a photo at the beach"; each
    image once per epoch of as many steps as there are images, as the reference serves them)
  + 0.01 * cross-attention loss (16x16 maps of each named handle pulled toward its mask).

With ``views_per_step`` = N > 1 a step batches N such views (each its own subset, flip, class
image, noise and timestep) in one UNet call and takes the mean of their losses; the paper's is 1.
``class_images_per_step`` sets the prior's rows apart from the views (default: one per view).

What differs between model families (SDXL's two text encoders, its pooled embedding and time
ids, its attention level) comes from ``comps.family`` (:mod:`engine.families`). With a LoRA phase
2 under autocast, the weights that never train (UNet, text encoders) are stored at the autocast
precision, as diffusers' LoRA trainers do; the LoRA weights and the handles stay fp32.

The photo's VAE posterior (and its flip's) is computed once; class images once per model. The
loop works with or without prior preservation, in fp32 or mixed precision, with or without
gradient checkpointing, on cuda, mps or cpu. All randomness comes from one torch generator and one
``random.Random`` whose states are checkpointed, so a resumed run on the CPU continues exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.training.attention import AttentionStore, cross_attention_resolutions, install_capture, remove_capture
from engine.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from engine.training.clipping import clip_global_norm_
from engine.training.config import TrainConfig
from engine.devices import autocast_dtype, pick_device
from engine.formats.results import TrainResult
from engine.errors import CheckpointError, OutOfMemory, TrainingCancelled, is_out_of_memory, short_reason
from engine.jobs.events import EventKind, ProgressCallback, StopCheck, TrainEvent
from engine.handles import HandleEmbedding, install_handle_set
from engine.training.losses import attention_loss, masked_diffusion_loss, resize_masks
from engine.models import SDComponents, load_model
from engine.training.phase2 import Phase2State, setup_phase2
from engine.training.prior import ensure_class_images, load_rgb
from engine.scene import Scene
from engine.training.step_in_backward import StepInBackward

PROMPT_PREFIX = "a photo of "


def build_prompt(tokens: list[str]) -> str:
    """``a photo of <asset0> and <asset2>`` for the chosen handles."""
    return PROMPT_PREFIX + " and ".join(tokens)


def sample_subset(rng: random.Random, n: int, union_sampling: bool = True) -> list[int]:
    """A uniformly sized random non-empty subset of ``range(n)``, drawn as the reference draws it.

    The size is uniform in 1..n, then ``rng.sample`` picks the members, and its random order is
    kept: the prompt names them, and the masks follow, in that order ("<asset2> and <asset0>").
    With ``union_sampling=False`` every concept is always chosen, in index order.
    """
    if not union_sampling:
        return list(range(n))
    k = rng.randrange(1, n + 1)
    return rng.sample(range(n), k)


def class_image_index(seed: int, step: int, count: int) -> int:
    """Which class image step ``step`` uses: each one once per epoch of ``count`` steps, in an
    order shuffled per epoch, as the reference's shuffling data loader serves them (its epoch is
    the class-image count). A function of the step alone, so a resumed run draws the same."""
    epoch, pos = divmod(step, count)
    order = torch.randperm(count, generator=torch.Generator("cpu").manual_seed(seed * 100_003 + epoch))
    return int(order[pos])


def _to_tensor_image(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float().div(127.5).sub(1.0)[None]


class BreakTrainer:
    """Runs Break-A-Scene on one scene. See the module docstring for the method.

    ``model`` is loaded components or any reference :func:`engine.models.load_model` takes.
    ``work_dir`` holds the checkpoint. ``callback`` receives :class:`TrainEvent` objects;
    ``should_stop`` is polled once per step for cooperative cancellation.
    """

    def __init__(self, scene: Scene, config: TrainConfig, model: SDComponents | str | None,
                 work_dir: str | Path, callback: ProgressCallback | None = None,
                 should_stop: StopCheck | None = None) -> None:
        self.scene = scene
        self.cfg = config.validate()
        self.work_dir = Path(work_dir)
        self.callback = callback or (lambda e: None)
        self.should_stop = should_stop or (lambda: False)
        self.device = pick_device(config.device)
        self.amp_dtype = autocast_dtype(self.device, config.precision)
        self._model_arg = model
        self.history: list[dict[str, float]] = []

    # ----------------------------------------------------------------- setup
    def _emit(self, kind: str, **kw: Any) -> None:
        self.callback(TrainEvent(kind=EventKind(kind), global_total=self.cfg.total_steps, **kw))

    def _setup(self) -> None:
        cfg = self.cfg
        # Weights that never train (a LoRA phase 2) are loaded at the autocast precision: SDXL's
        # 2.6 B-parameter UNet then never sits in memory in fp32. The VAE stays fp32.
        frozen = self.amp_dtype if cfg.lora_rank and self.amp_dtype is not None else torch.float32
        if isinstance(self._model_arg, SDComponents):
            self.comps = self._model_arg
        else:
            self.comps = load_model(self._model_arg, device=self.device, dtype=frozen)
            vae: torch.nn.Module = self.comps.vae  # (diffusers' ModelMixin.to confuses type checkers)
            vae.to(torch.float32)
        comps = self.comps
        self.family = comps.family
        for m in comps.modules():
            m.to(self.device).requires_grad_(False)
        self.res = cfg.resolution or comps.resolution
        if self.res % (comps.vae_scale * 8):
            raise ValueError(f"resolution {self.res} must be a multiple of {comps.vae_scale * 8}")
        self.latent = self.res // comps.vae_scale
        self.attn_res = cfg.attention_resolution or self.family.attention_side(comps.unet, self.latent)
        sides = sorted(set(cross_attention_resolutions(comps.unet, self.latent).values()))
        if cfg.lambda_attention > 0 and self.attn_res not in sides:  # before any class image is drawn
            raise ValueError(f"attention_resolution = {self.attn_res}: this model has cross-attention at "
                             f"{', '.join(f'{s}x{s}' for s in sides) or 'no side'} for {self.res} px "
                             f"({self.latent}x{self.latent} latents)")
        self.prediction_type = comps.scheduler.config.prediction_type

        if cfg.prior_preservation:
            self._prepare_prior()
        if frozen != torch.float32:
            for m in (comps.unet, *comps.text_encoders()):
                m.to(frozen)  # frozen in both phases; the LoRA weights are made fp32 in phase 2

        self.tokens = self.scene.tokens
        words = [c.init_word for c in self.scene.concepts]
        # One trainable [N, D] parameter (SDXL: [N, 768 + 1280], both encoders' rows side by side).
        self.embs, self.token_ids = install_handle_set(self.family.encoders(comps), self.tokens, words)
        self.emb: HandleEmbedding = self.embs[0]
        # Phase 1's clip counts the prompt words' rows of the token table, as the reference's does.
        self._track_base_grad(bool(cfg.max_grad_norm))

        self.store = AttentionStore()
        install_capture(comps.unet, self.latent, self.attn_res, self.store)
        self._prepare_scene()
        if cfg.gradient_checkpointing:
            comps.unet.enable_gradient_checkpointing()
            for te in comps.text_encoders():
                te.gradient_checkpointing_enable()
        self.phase2: Phase2State | None = None

    def _track_base_grad(self, on: bool) -> None:
        for e in self.embs:
            e.track_base_grad = on

    def _take_base_grad_sq(self) -> torch.Tensor | None:
        got = [s for s in (e.take_base_grad_sq() for e in self.embs) if s is not None]
        return torch.stack(got).sum() if got else None

    def _condition(self, ids: list[torch.Tensor]) -> Any:
        """The UNet conditioning of tokenized prompts (:meth:`engine.families.ModelFamily.encode`)."""
        return self.family.encode(self.comps, ids, (self.res, self.res))

    def _encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE posterior mean and std (sampling happens per step with our generator)."""
        vae = self.comps.vae
        with torch.no_grad():
            dist = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist
        return dist.mean.float(), dist.std.float()

    def _prepare_scene(self) -> None:
        img = Image.fromarray(self.scene.image).resize((self.res, self.res), Image.Resampling.BICUBIC)
        pixels = _to_tensor_image(np.asarray(img))
        pixels = torch.cat([pixels, pixels.flip(-1)])
        self.mean, self.std = self._encode(pixels)  # [2, 4, h, w]: index 1 is the flip
        masks = torch.from_numpy(np.stack([c.binary() for c in self.scene.concepts])).float()
        masks = torch.stack([masks, masks.flip(-1)])  # [2, N, H, W]
        self.latent_masks = torch.stack([resize_masks(m, self.latent) for m in masks]).to(self.device)
        self.attn_masks = torch.stack([resize_masks(m, self.attn_res) for m in masks]).to(self.device)

    def _prepare_prior(self) -> None:
        cfg = self.cfg
        self._emit("status", message=f"preparing {cfg.num_class_images} class images ('{cfg.class_prompt}')")
        paths = ensure_class_images(
            self.comps, cfg.class_prompt, cfg.num_class_images, self.res, cfg.seed,
            steps=cfg.class_inference_steps, device=self.device,
            progress=lambda i, n: self._emit("status", message=f"class image {i}/{n}"),
            should_stop=self.should_stop)
        if len(paths) < cfg.num_class_images:
            raise TrainingCancelled(0, None)
        pixels = torch.cat([_to_tensor_image(load_rgb(p, self.res)) for p in paths])
        means, stds = zip(*(self._encode(pixels[i:i + 8]) for i in range(0, len(pixels), 8)))
        self.class_mean, self.class_std = torch.cat(means), torch.cat(stds)
        self.class_ids = self._tokenize([cfg.class_prompt])

    def _tokenize(self, prompts: list[str]) -> list[torch.Tensor]:
        """Token ids for every text encoder of the family (the first tokenizer's come first)."""
        return self.family.tokenize(self.comps, prompts, self.device)

    # ------------------------------------------------------------- optimizers
    def _phase1_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([self.emb.handles], lr=self.cfg.phase1_lr,
                                 weight_decay=self.cfg.adam_weight_decay)

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        if self.phase2 is None:
            return {}
        return {k: v.detach().cpu().clone() for k, v in self.phase2.named_trainable().items()}

    # ------------------------------------------------------------------ loop
    def _fingerprint(self) -> str:
        h = hashlib.sha1()
        h.update(self.scene.image.tobytes())
        for c in self.scene.concepts:
            h.update(c.token.encode())
            h.update(np.packbits(c.binary()).tobytes())
        cfg = {k: v for k, v in self.cfg.identity_dict().items()
               if k not in ("checkpoint_every", "preview_every", "device")}
        h.update(json.dumps(cfg, sort_keys=True).encode())
        h.update(str(self.comps.ref).encode())
        return h.hexdigest()

    def run(self, resume: bool = False) -> TrainResult:
        """Train both phases and return the result. Raises ``TrainingCancelled`` when stopped."""
        t0 = time.perf_counter()
        self._setup()
        cfg = self.cfg
        gen = torch.Generator("cpu").manual_seed(cfg.seed)
        rng = random.Random(cfg.seed)
        start = 0
        state = load_checkpoint(self.work_dir) if resume else None
        if resume and state is None:
            raise CheckpointError(f"{self.work_dir}: no checkpoint to resume from")
        if state is not None:
            if state["fingerprint"] != self._fingerprint():
                raise CheckpointError(f"{self.work_dir}: the checkpoint belongs to another scene, model or "
                                      "settings; delete it or run without --resume")
            start = int(state["global_step"])
            if start > cfg.total_steps:
                raise CheckpointError(f"{self.work_dir / CHECKPOINT_NAME}: the checkpoint is at step {start} of "
                                      f"{cfg.total_steps}; delete it to start over")
        try:
            if state is not None:
                with torch.no_grad():
                    self.emb.handles.copy_(state["handles"])
                gen.set_state(state["torch_rng"])
                rng.setstate(_tuplify(state["py_rng"]))
                self.history = list(state.get("history", []))
            opt: torch.optim.Optimizer | StepInBackward | None = (
                self._phase1_optimizer() if start < cfg.phase1_steps else None)
            if opt is not None and state is not None and state.get("phase") == 1 and state.get("optimizer"):
                opt.load_state_dict(state["optimizer"])
            if start >= cfg.phase1_steps:
                opt = self._enter_phase2(state)
            scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
            if state is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
            if state is None or is_out_of_memory(e):
                raise
            raise CheckpointError(f"{self.work_dir / CHECKPOINT_NAME}: the checkpoint does not fit this run "
                                  f"({short_reason(e, 100)}); delete it to start over") from None
        self._emit("status", message=f"training on {self.device.type}, {self.res}px, attention at "
                                     f"{self.attn_res}x{self.attn_res}, resuming at step {start}" if start
                   else f"training on {self.device.type}, {self.res}px, attention at {self.attn_res}x{self.attn_res}")
        try:
            self._loop(start, opt, scaler, gen, rng, t0)
        finally:
            opt = None  # AdamW's moments (7 GB for SD 2.1's UNet) go before the result copies the weights
            if self.phase2 is not None:
                self.phase2.close()
            remove_capture(self.comps.unet)
        if self.phase2 is None:
            self.phase2 = setup_phase2(self.comps, self.emb, self.cfg, enable=False)
        result = TrainResult(
            tokens=list(self.tokens),
            handles={t: self.emb.handles[i].detach().float().cpu().clone() for i, t in enumerate(self.tokens)},
            unet_state=self.phase2.unet_state(), text_encoder_state=self.phase2.text_encoder_state(),
            lora=self.phase2.lora_state(), config=cfg, base_model=str(self.comps.ref),
            resolution=self.res, attention_resolution=self.attn_res,
            seconds=time.perf_counter() - t0, losses=self.history,
            text_encoder_2_state=self.phase2.text_encoder_state("text_encoder_2"),
            model_info=self.family.info(self.comps))
        self._emit("done", global_step=cfg.total_steps, elapsed=result.seconds, message="training finished")
        return result

    def _loop(self, start: int, opt: torch.optim.Optimizer | StepInBackward | None, scaler: torch.amp.GradScaler, gen: torch.Generator,
              rng: random.Random, t0: float) -> None:
        cfg = self.cfg
        run_t0, done_here = time.perf_counter(), 0
        for step in range(start, cfg.total_steps):
            phase = 1 if step < cfg.phase1_steps else 2
            if phase == 2 and self.phase2 is None:
                opt = self._enter_phase2(None)
            if self.should_stop():
                ck = self._checkpoint(step, phase, opt, scaler, gen, rng)
                raise TrainingCancelled(step, ck)
            assert opt is not None  # phase 1 built its optimizer; phase 2 runs only when it has steps
            try:
                losses = self._train_step(opt, scaler, gen, rng, step)
            except (RuntimeError, MemoryError) as e:
                if not is_out_of_memory(e):
                    raise
                ck = self.work_dir / CHECKPOINT_NAME
                raise OutOfMemory(self.device.type, f"phase {phase} step {step + 1}",
                                  ck if ck.exists() else None) from None
            self.history.append(losses)
            done_here += 1
            elapsed = time.perf_counter() - run_t0
            eta = elapsed / done_here * (cfg.total_steps - step - 1)
            in_phase = step - (0 if phase == 1 else cfg.phase1_steps) + 1
            self._emit("step", phase=phase, step=in_phase,
                       total=cfg.phase1_steps if phase == 1 else cfg.phase2_steps,
                       global_step=step + 1, losses=losses, elapsed=time.perf_counter() - t0, eta=eta)
            if cfg.preview_every and (step + 1) % cfg.preview_every == 0:
                self._preview(phase, step + 1)
            boundary = step + 1 == cfg.phase1_steps
            if cfg.checkpoint_every and ((step + 1) % cfg.checkpoint_every == 0 or boundary) \
                    and step + 1 < cfg.total_steps:
                ck = self._checkpoint(step + 1, 1 if boundary else phase, opt, scaler, gen, rng)
                self._emit("checkpoint", phase=phase, global_step=step + 1, message=str(ck))

    def _enter_phase2(self, state: dict[str, Any] | None) -> torch.optim.Optimizer | StepInBackward | None:
        """Set up phase 2 and return its optimizer (``None`` when phase 2 has no steps)."""
        torch.manual_seed(self.cfg.seed + 1)  # LoRA init draws from the global generator
        saved = state["optimizer"] if state is not None and state.get("phase") == 2 else None
        self.phase2 = setup_phase2(self.comps, self.emb, self.cfg, enable=self.cfg.phase2_steps > 0,
                                   loss_scaling=self.amp_dtype == torch.float16,
                                   # a resumed run keeps the step mode its optimizer state was written in
                                   in_backward=None if saved is None else "step_in_backward" in saved)
        opt = self.phase2.optimizer
        # The reference's phase-2 clip covers the whole text encoder, its token table included.
        self._track_base_grad(bool(self.cfg.max_grad_norm) and self.phase2.mode == "full"
                              and self.phase2.text_encoder_trains and not isinstance(opt, StepInBackward))
        if saved is not None and state is not None:
            self.phase2.load_trainable(state["trainable"])
            assert opt is not None  # a phase-2 checkpoint comes from a run whose phase 2 has steps
            opt.load_state_dict(state["optimizer"])
        self._emit("status", phase=2, message=f"phase 2: {self.phase2.describe()}")
        return opt

    def _checkpoint(self, global_step: int, phase: int, opt: torch.optim.Optimizer | StepInBackward | None,
                    scaler: torch.amp.GradScaler, gen: torch.Generator, rng: random.Random) -> Path:
        if global_step == self.cfg.phase1_steps:
            phase, opt = 1, None  # resume enters phase 2 freshly, exactly as an uninterrupted run
        return save_checkpoint(self.work_dir, {
            "global_step": global_step, "phase": phase, "fingerprint": self._fingerprint(),
            "handles": self.emb.handles.detach().cpu().clone(),
            "trainable": self._trainable_state() if phase == 2 else {},
            "optimizer": opt.state_dict() if opt is not None else {},
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "torch_rng": gen.get_state(), "py_rng": rng.getstate(), "history": self.history,
        })

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        # Under checkpointing, autocast's cache of low-precision weight copies would hold a second
        # copy of every trainable weight (1.7 GB for SD 2.1's UNet in bf16) through the forward;
        # the recomputed segments cast again in backward anyway.
        return torch.autocast(self.device.type, dtype=self.amp_dtype,
                              cache_enabled=not self.cfg.gradient_checkpointing)

    def _train_step(self, opt: torch.optim.Optimizer | StepInBackward, scaler: torch.amp.GradScaler,
                    gen: torch.Generator, rng: random.Random, step: int = 0) -> dict[str, float]:
        cfg, comps = self.cfg, self.comps
        # Each view: its own subset of concepts and flip (then its own class image, noise and t).
        views = []
        for _ in range(cfg.views_per_step):
            chosen = sample_subset(rng, len(self.tokens), cfg.union_sampling)
            views.append((chosen, int(cfg.flip and rng.random() < 0.5)))
        b = len(views)
        ids = self._tokenize([build_prompt([self.tokens[i] for i in c]) for c, _ in views])
        nc = cfg.class_images_per_step or b
        js = ([class_image_index(cfg.seed, step * nc + k, len(self.class_mean)) for k in range(nc)]
              if cfg.prior_preservation else None)
        mean, std = self._step_posterior([f for _, f in views], js)
        eps = torch.cat([torch.randn(mean[:1].shape, generator=gen) for _ in range(len(mean))])
        latents = mean + std * eps.to(self.device)
        if js is not None:
            ids = [torch.cat([a, c.expand(nc, -1)]) for a, c in zip(ids, self.class_ids)]
        latents = latents * comps.vae.config["scaling_factor"]
        noise = torch.randn(latents.shape, generator=gen).to(self.device)
        t = torch.randint(0, comps.scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen).to(self.device)
        noisy = comps.scheduler.add_noise(latents, noise, t)
        target = noise if self.prediction_type == "epsilon" else comps.scheduler.get_velocity(latents, noise, t)

        comps.unet.train(self.phase2 is not None and self.phase2.unet_trains)
        for te in comps.text_encoders():
            te.train(self.phase2 is not None and self.phase2.text_encoder_trains)
        self.store.reset()
        with self._autocast():
            cond = self._condition(ids)
            pred = comps.unet(noisy, t, cond.hidden, added_cond_kwargs=cond.added).sample
        pred = pred.float()
        union = (torch.stack([self.latent_masks[f, c].amax(0)[None] for c, f in views])
                 if cfg.masked_loss else None)  # [b, 1, h, w]
        loss_diff = masked_diffusion_loss(pred[:b], target[:b], union)
        losses = {"diffusion": loss_diff.item()}
        total = loss_diff
        if latents.shape[0] > b:
            loss_prior = masked_diffusion_loss(pred[b:], target[b:], None)
            total = total + cfg.prior_weight * loss_prior
            losses["prior"] = loss_prior.item()
        if cfg.lambda_attention:
            agg = self.store.aggregate(self.attn_res)  # [rows, r, r, T]: the first b are the views
            per_view = []
            for k, (c, f) in enumerate(views):
                pos = [int((ids[0][k] == self.token_ids[i]).nonzero()[0]) for i in c]
                per_view.append(attention_loss(agg[k][..., pos].permute(2, 0, 1), self.attn_masks[f, c]))
            loss_attn = torch.stack(per_view).mean()
            total = total + cfg.lambda_attention * loss_attn
            losses["attention"] = loss_attn.item()
        losses["total"] = total.item()
        if isinstance(opt, StepInBackward):
            total.backward()  # steps every parameter on the way (fp16 scaling never gets here)
            return losses
        scaler.scale(total).backward()
        rows_sq = self._take_base_grad_sq()
        if cfg.max_grad_norm:
            scaler.unscale_(opt)
            if rows_sq is not None and scaler.is_enabled():
                rows_sq = rows_sq / scaler.get_scale() ** 2
            params = [p for g in opt.param_groups for p in g["params"]]
            clip_global_norm_(params, cfg.max_grad_norm, rows_sq)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return losses

    def _step_posterior(self, flips: list[int], js: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE posterior mean and std of the step's images, ``[b or 2b, 4, h, w]``: the photo (its
        flip where ``flips`` says 1) once per view, then, with the prior, class images ``js`` (one
        per view unless ``class_images_per_step`` says how many).
        Encoded once at setup, where the reference encodes both every step (bench/train_step.py's
        reference arm does)."""
        mean, std = self.mean[flips], self.std[flips]
        if js is None:
            return mean, std
        return torch.cat([mean, self.class_mean[js]]), torch.cat([std, self.class_std[js]])

    @torch.no_grad()
    def _preview(self, phase: int, global_step: int) -> None:
        """Every handle's attention map for the all-handles prompt at a fixed noise and timestep."""
        comps = self.comps
        g = torch.Generator("cpu").manual_seed(1234)
        lat = self.mean[:1] * comps.vae.config["scaling_factor"]
        noise = torch.randn(lat.shape, generator=g).to(self.device)
        t = torch.full((1,), comps.scheduler.config.num_train_timesteps // 2, device=self.device)
        ids = self._tokenize([build_prompt(self.tokens)])
        self.store.reset()
        with self._autocast():
            cond = self._condition(ids)
            comps.unet(comps.scheduler.add_noise(lat, noise, t), t, cond.hidden, added_cond_kwargs=cond.added)
        agg = self.store.aggregate(self.attn_res)[0].float()
        maps, overlap = {}, {}
        for i, tok in enumerate(self.tokens):
            m = agg[..., int((ids[0][0] == self.token_ids[i]).nonzero()[0])]
            m = (m / m.max().clamp_min(1e-12)).cpu()
            mask = self.attn_masks[0, i].cpu()
            maps[tok] = m.numpy()
            overlap[tok] = float(torch.minimum(m, mask).sum() / torch.maximum(m, mask).sum().clamp_min(1e-12))
        self.store.reset()
        self._emit("preview", phase=phase, global_step=global_step, attention=maps, overlap=overlap)


def _tuplify(x: Any) -> Any:
    """``random.setstate`` needs tuples; checkpoints may hand back lists."""
    return tuple(_tuplify(i) for i in x) if isinstance(x, (list, tuple)) else x
