"""What both HTTP servers of the functions side share: uvicorn, worker state, bodies.

The function runtime and the event store are both ASGI apps served by uvicorn
(httptools on uvloop), in one process or under a supervisor of several
(:mod:`.asgi_server`, with the bounded-time HTTP protocol of :mod:`.http_protocol`); this
package also holds the directory their workers share for metrics and readiness
(:mod:`.multiproc`) and the size-limited request body reader (:mod:`.bodies`).
"""
