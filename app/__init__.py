"""HTTP service of the lip-sync project (FastAPI): see :func:`app.main.create_app`."""
