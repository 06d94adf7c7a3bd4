"""Gunicorn configuration: `gunicorn -c gunicorn.conf.py wsgi:application`.

The settings live in the core package (stevedores/gunicorn_conf.py) so that an
installed dashboard and this repository start the same way.
"""

from stevedores.gunicorn_conf import *  # noqa: F403
