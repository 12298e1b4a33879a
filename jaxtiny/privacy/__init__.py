"""Differential privacy: per-example sanitization and host-side accounting."""
