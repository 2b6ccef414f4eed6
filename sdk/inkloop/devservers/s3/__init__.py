"""A local S3 endpoint for tests and first-time users: moto's standalone server on 127.0.0.1.

``python -m inkloop.devservers.s3`` runs one in the foreground and prints the environment a client
sets (``AWS_ENDPOINT_URL`` …); tests use :func:`start` / :func:`stop` (or :class:`S3Server`). The
server runs in its own process group and is stopped by its PID, never by name.
"""

from inkloop.devservers.s3.server import S3Handle, S3Server, S3ServerError, start, stop

__all__ = ["S3Handle", "S3Server", "S3ServerError", "start", "stop"]
