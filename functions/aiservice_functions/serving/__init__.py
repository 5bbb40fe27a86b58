"""What both HTTP servers of the functions side share: gunicorn, worker state, bodies.

The function runtime and the event store are both WSGI apps served by gunicorn with
threaded workers; this package holds that glue once (:mod:`.wsgi_server`), the directory
their workers share for metrics and readiness (:mod:`.multiproc`) and the size-limited
request body reader (:mod:`.bodies`).
"""
