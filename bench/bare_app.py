"""A bare Flask endpoint, the baseline that benchmarks compare against, served by PLAIN gunicorn
with the dashboard's worker count, worker class and threads and none of its configuration
(``gunicorn -w N -k gthread --threads 4 bench.bare_app:application``; see
``bench.stack.start_plain_baseline``)."""

from flask import Flask

application = Flask("bare")


@application.get("/bare")
def bare() -> tuple[str, int]:
    """The cheapest possible JSON answer."""
    return '{"status": "ok"}', 200
