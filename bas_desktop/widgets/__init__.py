"""The app's widgets: the canvas and its tools, the panels, the dialogs and the studio that wires them.

Widgets read and change the model (``bas_desktop.model``) and submit its jobs to the
:class:`~bas_desktop.workers.JobRunner`; the model never imports them.
"""
