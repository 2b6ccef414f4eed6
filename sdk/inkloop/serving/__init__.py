"""Serving: the Triton server for a model reference, the model repository for a stock Triton, the
browser demo. Each runs as its own process (``inkloop serve``, ``inkloop demo``)."""
