"""Backends: loop IR -> native code (c.py for CPUs), and the toolchain that compiles it."""
