"""Training: the two-phase Break-A-Scene trainer and its parts.

``config`` (settings and presets, torch-free), ``trainer`` (the two phases), ``phase2`` (which
weights train: full or LoRA), ``losses`` and ``attention`` (masked diffusion loss, cross-attention
capture and loss), ``prior`` (cached class images), ``checkpoint``, ``clipping``,
``step_in_backward`` (optimizer steps inside backward) and ``estimate`` (time and memory up front).
"""
