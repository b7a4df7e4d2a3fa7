"""Break-A-Scene Desktop: the PySide6 app (masks, Segment Anything, break, gallery, local edits, packs).

``model/`` is the user's work in plain Python + numpy (no Qt); ``widgets/`` are the canvas, the
tools, panels and dialogs that show and change it; ``workers``, ``settings`` and ``autosave`` are
the Qt services between them; ``app`` is the main window and the entry point. The layers and what
may import what: ``docs/architecture.md``.
"""
