"""Breaks beyond one process: many scenes as Ray tasks, locally or on a cluster (``batch``)."""
