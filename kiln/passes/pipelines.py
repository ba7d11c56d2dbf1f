"""The pass pipeline of each opt_level: plain lists of pass names, run by PassManager."""
from __future__ import annotations

PIPELINES: dict[int, list[str]] = {
    0: [],
    1: ["simplify", "fold-constants", "dce"],
    2: ["simplify", "fold-constants", "cse", "fold-batchnorm", "dce", "fuse", "pack-weights"],
    3: ["simplify", "fold-constants", "cse", "fold-batchnorm", "dce", "fuse", "pack-weights"],
}


def pipeline(opt_level: int) -> list[str]:
    return list(PIPELINES[opt_level])
