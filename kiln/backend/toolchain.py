"""The system C compiler: detection, flags, parallel compilation, and the on-disk cache.

Cache: `$XDG_CACHE_HOME/kiln` (default ~/.cache/kiln; `KILN_CACHE_DIR` overrides), one folder per
content hash of (sources, flags, compiler). Entries are written to a temporary folder and renamed
into place, so two processes compiling the same model at once are safe; an entry whose library no
longer matches its recorded checksum is rebuilt.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from ..errors import KilnError


class ToolchainError(KilnError):
    """No usable C compiler, or the generated code failed to compile."""


@dataclass(frozen=True)
class Toolchain:
    cc: str
    version: str
    flags: tuple
    openmp: bool
    native: bool

    def key(self) -> str:
        return f"{self.cc}|{self.version}|{' '.join(self.flags)}"


def cache_dir() -> str:
    root = os.environ.get("KILN_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "kiln")
    os.makedirs(root, exist_ok=True)
    return root


def _try(cc: str, flags: list, src: str = "int main(void){return 0;}\n") -> bool:
    with tempfile.TemporaryDirectory() as d:
        c = os.path.join(d, "t.c")
        with open(c, "w") as f:
            f.write(src)
        r = subprocess.run([cc, *flags, c, "-o", os.path.join(d, "t")], capture_output=True)
        return r.returncode == 0


@lru_cache(maxsize=None)
def find_toolchain(cc: str | None = None) -> Toolchain:
    cc = cc or os.environ.get("KILN_CC") or os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise ToolchainError(f"no C compiler found (looked for {cc!r}); install gcc or clang, "
                             "or set KILN_CC; target='interpret' runs without one")
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as e:
        raise ToolchainError(f"C compiler {path} does not run: {e}") from None
    flags = ["-O3", "-std=c11", "-fPIC", "-ffp-contract=fast", "-fno-math-errno"]
    native = _try(path, flags + ["-march=native"])
    if native:
        flags.append("-march=native")
    omp_src = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    openmp = _try(path, flags + ["-fopenmp"], omp_src)
    if openmp:
        flags.append("-fopenmp")
    if not _try(path, flags):
        raise ToolchainError(f"C compiler {path} cannot build a trivial program with {flags}")
    return Toolchain(path, version, tuple(flags), openmp, native)


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_library(sources: dict[str, str], tc: Toolchain | None = None, jobs: int | None = None,
                  progress=None) -> tuple[str, bool]:
    """Compile C translation units {name.c: text} into one shared library; returns (path, cached).
    `progress` (kiln/tools/progress.py) gets one step per translation unit compiled."""
    tc = tc or find_toolchain()
    if progress is not None:
        progress.stage("cc", len(sources))
    h = hashlib.sha256(tc.key().encode())
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    key = h.hexdigest()[:32]
    entry = os.path.join(cache_dir(), key)
    lib = os.path.join(entry, "libkiln_model.so")
    if os.path.exists(lib) and _valid(entry, lib):
        if progress is not None:
            progress.done("cache hit")
        return lib, True
    tmp = tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir())
    try:
        for name, text in sources.items():
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        out = os.path.join(tmp, "libkiln_model.so")
        if len(sources) == 1:                    # one unit: compile and link in one step
            (name,) = sources
            r = subprocess.run([tc.cc, *tc.flags, "-shared", os.path.join(tmp, name), "-o", out, "-lm"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise ToolchainError(f"generated code failed to compile ({name}):\n{r.stderr[-4000:]}")
            if progress is not None:
                progress.advance(name)
            return _publish(tmp, out, entry, lib), False
        objs = [os.path.join(tmp, n[:-2] + ".o") for n in sources]

        def compile_one(args):
            src, obj = args
            r = subprocess.run([tc.cc, *tc.flags, "-c", os.path.join(tmp, src), "-o", obj],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise ToolchainError(f"generated code failed to compile ({src}):\n{r.stderr[-4000:]}")
            if progress is not None:
                progress.advance(src)
        jobs = jobs or max(1, min(len(sources), os.cpu_count() or 1))
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(compile_one, zip(sources, objs)))
        link = [tc.cc, *tc.flags, "-shared", *objs, "-o", out, "-lm"]
        r = subprocess.run(link, capture_output=True, text=True)
        if r.returncode != 0:
            raise ToolchainError(f"linking the generated code failed:\n{r.stderr[-4000:]}")
        return _publish(tmp, out, entry, lib), False
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: str, out: str, entry: str, lib: str) -> str:
    """Move a finished build into the cache (atomically: rename of a whole folder)."""
    with open(os.path.join(tmp, "checksum"), "w") as f:
        f.write(_digest(out))
    if os.path.exists(entry):                # stale or corrupt entry: replace it
        shutil.rmtree(entry, ignore_errors=True)
    try:
        os.rename(tmp, entry)
    except OSError:                          # another process won the race: use its entry
        if not (os.path.exists(lib) and _valid(entry, lib)):
            raise ToolchainError(f"cache entry {entry} is unusable") from None
    return lib


def _valid(entry: str, lib: str) -> bool:
    try:
        with open(os.path.join(entry, "checksum")) as f:
            return f.read().strip() == _digest(lib)
    except OSError:
        return False
