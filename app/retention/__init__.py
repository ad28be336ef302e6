"""Retention: raw rows of windows past a model's horizon are deleted in bounded steps."""
