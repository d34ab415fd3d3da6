"""Keep freed tensor memory inside the process instead of handing it back to the OS every step.

torch's CPU tensors come from the C allocator, and it has no caching allocator of its own on the
CPU. glibc's malloc serves every block above 32 MiB (ODMT's [1,000 items, 33 tokens, 512] MLP
activations are 67 MiB) with a fresh `mmap` and returns it with `munmap` when the tensor dies, and
it trims the heap's free top back to the OS beyond 128 KiB. So each training step asks the kernel
for the same gigabytes again, and every page is zeroed and faulted in on its first touch: on Amazon
Scientific 23% of an ODMT step's CPU time was system time, and `fill_`, `copy_`, `uniform_` and
`gelu` (the ops that first write a new tensor) took a quarter of the step (BENCHMARKS.md,
"Freed memory kept in the process").

`keep_freed_memory()` tells glibc (mallopt) to serve every block from the heap and to keep what
is freed, so a step reuses the pages of the previous one. It changes where memory comes from,
never what is computed: results are bit-identical (tested). The cost is that a process holds its
peak heap until it exits (peak RSS +20% for ODMT on Scientific). Every stage process calls it at
its entry (mmrec.entry.configure_threads); `MMREC_MALLOC=system` leaves glibc's defaults. Other
C libraries (macOS, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Mapping, Optional

#: The operator's switch: `keep` (default) or `system` (glibc's own defaults).
ENV = "MMREC_MALLOC"
CHOICES = ("keep", "system")

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

#: What `keep` sets. mallopt takes a C int, so 2 GiB - 1 is the largest trim threshold.
SETTINGS: tuple[tuple[str, int, int], ...] = (
    ("mmap_max", M_MMAP_MAX, 0),                      # no block is mmap'ed: all come from the heap
    ("trim_threshold", M_TRIM_THRESHOLD, 2**31 - 1),  # free memory at the heap's top stays
    ("top_pad", M_TOP_PAD, 64 << 20),                 # grow the heap 64 MiB at a time (fewer brk calls)
)


def mode(env: Optional[Mapping[str, str]] = None) -> str:
    """`keep` or `system` from MMREC_MALLOC (unset = keep); anything else is an error naming it."""
    value = (os.environ if env is None else env).get(ENV, "keep").strip().lower() or "keep"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(CHOICES)}")
    return value


def _glibc_mallopt():
    """glibc's mallopt, or None where the C library is another one (macOS, musl, Windows)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    fn = getattr(ctypes.CDLL(None), "mallopt", None)
    if fn is not None:
        fn.argtypes = (ctypes.c_int, ctypes.c_int)
        fn.restype = ctypes.c_int
    return fn


def keep_freed_memory(env: Optional[Mapping[str, str]] = None) -> bool:
    """Apply SETTINGS to this process's glibc malloc unless MMREC_MALLOC=system; True when they
    are in effect. Affects allocations made after the call, so call it before the heavy work."""
    if mode(env) == "system":
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return all(mallopt(param, value) == 1 for _, param, value in SETTINGS)
