"""Coordinate conversions, one module per foreign format, each with exact inverses.

All of them start from the canonical box: ``xyxy`` in page pixels (see :mod:`inkloop.types`).
"""
