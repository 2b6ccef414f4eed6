"""Ports for the local servers (Label Studio, MLflow, Triton, the Celery deployment): one place
that says which port is free, so every server answers the question the same way."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port the kernel considers free right now (bind to port 0), for tests and parallel runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when a server would get ``port`` as asked, by a client's test and by the kernel's.

    Label Studio's own test is a connect to ``localhost:port``; servers then bind with
    SO_REUSEADDR. Both are mirrored, so a port in TIME_WAIT counts as free (it is) and a listener
    on any loopback address that would clash counts as busy.
    """
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                if s.connect_ex((addr, port)) == 0:
                    return False
        except OSError:
            pass  # no IPv6 on this machine
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
