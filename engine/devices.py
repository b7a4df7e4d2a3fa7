"""Device and precision choice."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit name that is unavailable is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but this torch build sees no CUDA GPU "
                         f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps was asked for, but MPS is not available on this machine")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for mixed precision, or ``None`` for plain fp32.

    ``auto``: fp16 on CUDA (bf16 where supported, which needs no loss scaling), fp32 elsewhere.
    """
    if precision == "no":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory this process could still allocate on ``device``, or ``None`` where unknown.

    CUDA: the driver's free memory plus what torch's caching allocator holds unused; MPS: the
    recommended working set minus what the driver holds; CPU: the OS's available RAM (psutil,
    which accelerate installs).
    """
    try:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
        if device.type == "mps":
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - no psutil, an old torch, an unusual driver: unknown
        return None


def transient_peak_bytes(device: torch.device) -> int:
    """How far above its current use this process has peaked so far (activations of the steps
    run until now); 0 where unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(device) - torch.cuda.memory_allocated(device))
        if device.type == "cpu":
            import resource
            import sys

            import psutil

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB
            return max(0, int(peak - psutil.Process().memory_info().rss))
    except Exception:  # noqa: BLE001 - no resource module (Windows), no psutil
        pass
    return 0


@dataclass(frozen=True)
class DeviceInfo:
    """The devices this torch build can use, and a message for the user."""

    available: list[str]
    auto: str
    message: str


def device_info() -> DeviceInfo:
    """Which of cuda/mps/cpu work here; a clear message when only the CPU is available."""
    avail = []
    if torch.cuda.is_available():
        avail.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        avail.append("mps")
    avail.append("cpu")
    if avail == ["cpu"]:
        msg = ("Only the CPU is available (no CUDA or Apple GPU seen by this torch build). Training "
               "works but is slow: the Paper preset takes hours; try Quick, or the offline model.")
    elif "cuda" in avail:
        msg = f"GPU: {torch.cuda.get_device_name(0)}"
    else:
        msg = "Apple GPU (MPS)"
    return DeviceInfo(avail, avail[0], msg)
