"""Curation: the FiftyOne dataset of pages (sync, evaluation, Brain, exports) and its database."""
