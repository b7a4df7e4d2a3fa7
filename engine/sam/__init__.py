"""Segment Anything for click-to-mask and mask suggestions (no Qt)."""
