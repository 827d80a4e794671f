"""Celery worker of the lip-sync service: ``celery -A worker.celery_app worker``."""
