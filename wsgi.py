"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:application`."""

from stevedores.wsgi import application

__all__ = ["application"]
