"""WSGI entry point: ``stevedores.wsgi:application``.

Under the bundled gunicorn configuration (``stevedores.gunicorn_conf``, which the
repository's gunicorn.conf.py re-exports) the master has already loaded the plugins,
validated the settings and built the services to size the workers: the app is built on
that same runtime (in the master with ``preload_app``, else in each worker after fork),
so a process never holds two plugin managers or two sets of services.
"""

import sys

from stevedores.app import create_app


def _application():  # noqa: ANN202 - a Flask app
    conf = sys.modules.get("stevedores.gunicorn_conf")
    plan = getattr(conf, "plan", None)
    return create_app() if plan is None else plan.app()


application = _application()
