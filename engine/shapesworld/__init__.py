"""ShapesWorld: the synthetic world, the offline model trained on it, and its judges."""
