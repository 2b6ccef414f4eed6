"""Ports for the local servers: :mod:`inkloop.net` holds them (``inkloop serve`` needs them too, and
a user command does not depend on ``devservers``); kept here for the scripts and tests that import
them from where they were."""

from inkloop.net import HOST, free_port, port_is_free

__all__ = ["HOST", "free_port", "port_is_free"]
