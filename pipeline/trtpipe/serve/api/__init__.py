"""The HTTP room: the ASGI app and its guards, admission, one request's lifecycle, SSE and JSON bodies, metrics."""
