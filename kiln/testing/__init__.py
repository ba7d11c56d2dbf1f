"""Helpers for tests, the demo and benchmarks: small models built in code with random weights."""
