"""Jobs: typed requests and events, the break runner every front end calls, and the job runners.

``events`` (what a job reports), ``runner`` (the :class:`~engine.jobs.runner.Runner` protocol and
the local thread runner), ``breaking`` (:func:`~engine.jobs.breaking.run_break`). No Qt here.
"""
