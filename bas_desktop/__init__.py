"""Break-A-Scene Desktop: the PySide6 scene editor (masks, Segment Anything, projects).

Models (``document``, ``project``, ``raster``) are plain Python + numpy; widgets observe them.
"""
