"""Models: references (bundled, path, ``hf://``, ``registry://``), model cards, the registry."""
