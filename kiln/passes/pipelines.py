"""The pass pipeline of each opt_level: plain lists of pass names, run by PassManager."""
from __future__ import annotations

PIPELINES: dict[int, list[str]] = {
    0: [],
    1: ["simplify", "fold-constants", "dce"],
    2: ["simplify", "fold-constants", "cse", "fold-batchnorm", "dce", "layout", "winograd",
        "pointwise-depthwise", "fuse", "pack-weights"],
    3: ["simplify", "fold-constants", "cse", "fold-batchnorm", "dce", "layout", "winograd",
        "pointwise-depthwise", "fuse", "pack-weights"],
}


# pass -> the passes that must have run before it. `pipeline(level, disable=...)` refuses to switch
# off a pass that a remaining one needs (no pass needs another today).
REQUIRES: dict[str, set[str]] = {}


def pipeline(opt_level: int, disable=()) -> list[str]:
    """The pass names of `opt_level`, without those in `disable` (which must be in the pipeline)."""
    from ..errors import KilnError
    names = list(PIPELINES[opt_level])
    off = set(disable)
    if not off <= set(names):
        raise KilnError(f"cannot disable {', '.join(sorted(off - set(names)))}: not in the opt_level "
                        f"{opt_level} pipeline ({', '.join(names) or 'empty'})")
    kept = [n for n in names if n not in off]
    for n in kept:
        needed = REQUIRES.get(n, set()) & off
        if needed:
            raise KilnError(f"disabling {', '.join(sorted(needed))} makes the pipeline invalid: "
                            f"{n} needs it")
    return kept
