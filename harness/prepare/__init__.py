"""Builders of the evaluation data shipped under harness/data/ (run each as a module)."""
