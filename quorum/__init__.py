"""Quorum: active-learning text annotation (Django project package).

The Celery application lives in ``quorum.celery`` (``celery -A quorum worker`` finds it there); Django
processes create it when the ``loop`` app is ready (``loop.apps``), so this package imports nothing
and modules such as ``quorum.vocabulary`` stay free of Django and Celery.
"""
