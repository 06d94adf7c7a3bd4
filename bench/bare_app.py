"""A bare Flask endpoint, served with the dashboard's own gunicorn configuration, as the
baseline that benchmarks compare against: ``gunicorn -c python:stevedores.gunicorn_conf
bench.bare_app:application``."""

from flask import Flask

application = Flask("bare")


@application.get("/bare")
def bare() -> tuple[str, int]:
    """The cheapest possible JSON answer."""
    return '{"status": "ok"}', 200
