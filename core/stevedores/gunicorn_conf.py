"""Gunicorn configuration for the dashboard (``gunicorn -c python:stevedores.gunicorn_conf``;
the repository's gunicorn.conf.py is this module).

Binds 0.0.0.0:$PORT (127.0.0.1:$PORT in the development profile); the worker count comes
from the worker-sizing hooks (see ``stevedores workers``); server hooks are forwarded to the plugins.
"""

import os

from stevedores.access_log import access_logger_class
from stevedores.logs import ACCESS_LOG_FORMAT, gunicorn_logconfig
from stevedores.server import GunicornPlan, hide_server_header

hide_server_header()  # no "Server: gunicorn" product name on any response
_plan = plan = GunicornPlan.load()  # stevedores.wsgi builds the app on plan.runtime
_config = _plan.config

bind = _plan.bind
workers = _plan.decision.final
worker_class = "gthread"
threads = 4
timeout = _config["GUNICORN_TIMEOUT"]
graceful_timeout = 30
keepalive = 5
max_requests = _config["GUNICORN_MAX_REQUESTS"]
max_requests_jitter = max_requests // 10
preload_app = _config["PRELOAD_APP"]
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
errorlog = "-"
logconfig_dict = gunicorn_logconfig(_config)  # gunicorn's lines in the app's one-line format
access_log_format = ACCESS_LOG_FORMAT
# Gunicorn's logger, with a cheaper access line, no line for a successful probe, and the lines
# buffered per worker for ACCESS_LOG_FLUSH_SECONDS (stevedores.access_log, stevedores.access_buffer).
logger_class = access_logger_class(_config["ACCESS_LOG_INFRASTRUCTURE"], _config["ACCESS_LOG_FLUSH_SECONDS"])
# gunicorn's sendfile() path never adds to the response's byte count, so every static file was
# logged as 0 bytes; our static files are a few KB, where zero-copy saves nothing measurable.
sendfile = False
loglevel = _config["LOG_LEVEL"].lower()
proc_name = "stevedores"
# Gunicorn 25.1+ opens a control socket in $HOME shared by every instance on the host: not wanted.
control_socket_disable = True
secure_scheme_headers: dict[str, str] = {}  # X-Forwarded-Proto is the core's job (stevedores.proxies)
# The same allow-list as the app's (gunicorn would read the variable itself, with its own default).
forwarded_allow_ips = ",".join(_config["FORWARDED_ALLOW_IPS"])

when_ready = _plan.when_ready
post_worker_init = _plan.post_worker_init
worker_exit = _plan.worker_exit
child_exit = _plan.child_exit
