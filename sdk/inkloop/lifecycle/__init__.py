"""Lifecycle: training, export and variants, the gate, promotion and the retraining loop."""
