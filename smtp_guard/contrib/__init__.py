"""Integrations with the stacks apps already run: Django, Celery, Prometheus.

Each module imports its framework, so import only the one you use:
``smtp_guard.contrib.django`` (an ``EMAIL_BACKEND``), ``smtp_guard.contrib.celery`` (a task
that retries the Celery way), ``smtp_guard.contrib.prometheus`` (a metrics hook).
"""
