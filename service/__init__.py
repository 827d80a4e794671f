"""The service core shared by the API (``app``) and the worker (``worker``).

Settings, the job record and its Redis store, the file layout of a job, the mapping from a
job's stored options to :class:`lipsync.options.RunOptions`, the queue's names and Celery
configuration, and the error codes clients see. It imports neither ``app`` nor ``worker``
(tests/test_import_graph.py checks), so the API never reaches into the worker to validate a
push, and the worker never imports the web layer.
"""
