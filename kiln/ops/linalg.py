"""TODO: ops of this family."""
from __future__ import annotations

OPS: list = []
