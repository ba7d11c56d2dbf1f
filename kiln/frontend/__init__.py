"""Frontends: turn a framework's model into kiln's graph IR."""
