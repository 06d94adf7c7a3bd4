"""A bare Flask endpoint, the baseline that benchmarks compare against, served by PLAIN gunicorn
with the dashboard's worker count, worker class and threads and none of its configuration
(``gunicorn -w N -k gthread --threads 4 bench.bare_app:application``; see
``bench.stack.start_plain_baseline``).

``/bare/counted`` is a reference, not a baseline: the same answer after one Redis round trip
(``INCR``) to the redis-server at ``$BENCH_REDIS_URL``, on a connection each thread keeps, sent and
read with plain socket calls (no client library, no timeout, no error handling). It is the least a
count shared by every worker and instance can cost a request on the machine, which the dashboard's
app-wide rate limit pays on every page (bench/bench_operations.py prints it beside the ratios).
"""

import os
import socket
import threading
from urllib.parse import urlsplit

from flask import Flask

application = Flask("bare")
_connections = threading.local()
COUNTED_KEY = b"bench:bare:counted"
#: INCR of COUNTED_KEY, in the Redis protocol (RESP).
_INCR = b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(COUNTED_KEY), COUNTED_KEY)


@application.get("/bare")
def bare() -> tuple[str, int]:
    """The cheapest possible JSON answer."""
    return '{"status": "ok"}', 200


@application.get("/bare/counted")
def counted() -> tuple[str, int]:
    """The cheapest JSON answer after one INCR round trip to ``$BENCH_REDIS_URL`` (500 without it)."""
    connection = getattr(_connections, "socket", None)
    if connection is None:
        address = urlsplit(os.environ["BENCH_REDIS_URL"])
        connection = socket.create_connection((address.hostname, address.port or 6379))
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as redis-py sets it
        _connections.socket = connection
    connection.sendall(_INCR)
    reply = connection.recv(64)  # ":<count>\r\n", one small segment
    return '{"status": "ok", "count": ' + reply[1:].strip().decode() + "}", 200
