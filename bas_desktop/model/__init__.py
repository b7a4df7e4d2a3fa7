"""The app's model: everything the user's work is, with no Qt at all (a contract in ``pyproject.toml``).

``document`` (photo, mask layers, undo atoms and history), ``raster`` (brush rasterisation),
``project`` (the ``.basproj`` file, recovery), ``project_data`` (checkpoints, pack and gallery of a
project), ``gallery_store``, ``session_lock``, ``jobs`` (the job functions the UI submits),
``importing`` (pack and embedding imports), ``model_setup`` and ``model_info`` (base models).
"""
