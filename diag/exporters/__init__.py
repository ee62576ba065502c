"""Deliver what collectors found: Prometheus metrics and tickets."""
