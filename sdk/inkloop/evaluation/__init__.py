"""Evaluation: the evaluator (a model on a labelled YOLO dataset) and the errors routing is measured
against."""
