"""Freed tensor memory kept in the process (mmrec.allocator): the switch, that glibc then serves
a large tensor from the heap instead of mmap, and that training gives the same weights either way."""

from __future__ import annotations

import ctypes
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from mmrec import allocator

ROOT = Path(__file__).resolve().parents[1]
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# glibc's mallinfo2(): hblkhd is the bytes held in mmap'ed blocks
MALLINFO = """
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]
"""

# Run in a child so that mallopt does not change the test process. It reports how many bytes a
# new 64 MiB tensor added to glibc's mmap'ed blocks (mallinfo2().hblkhd), and a digest of a small
# ODMT trained for two epochs (the dropout RNG in play) as tests/train/test_repro.py trains it.
CHILD = r"""
import ctypes, hashlib, json, sys, tempfile
from pathlib import Path
sys.path[:0] = [sys.argv[1] + "/tests/train", sys.argv[1] + "/tests/models", sys.argv[1]]
from mmrec.allocator import keep_freed_memory
kept = keep_freed_memory()
import torch

MALLINFO

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblkhd
t = torch.ones(16 << 20)                                           # 64 MiB
mmapped = libc.mallinfo2().hblkhd - before
del t
import test_repro
from mmrec.train.repro import make_repeatable
make_repeatable(1)
with tempfile.TemporaryDirectory() as tmp:
    state = test_repro._train("odmt", Path(tmp))
digest = hashlib.sha256(b"".join(v.contiguous().numpy().tobytes() for _, v in sorted(state.items()))).hexdigest()
print(json.dumps({"kept": kept, "mmapped": mmapped, "digest": digest}))
""".replace("MALLINFO", MALLINFO)


def _child(setting: str) -> dict:
    env = {**os.environ, allocator.ENV: setting, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value, expected", [(None, "keep"), ("keep", "keep"), ("system", "system"),
                                             (" System ", "system"), ("", "keep")])
def test_mode(value, expected):
    env = {} if value is None else {allocator.ENV: value}
    assert allocator.mode(env) == expected


def test_mode_rejects_unknown_value_naming_the_variable():
    with pytest.raises(ValueError, match=r"MMREC_MALLOC='jemalloc'.*keep, system"):
        allocator.mode({allocator.ENV: "jemalloc"})


def test_system_setting_leaves_malloc_alone():
    assert allocator.keep_freed_memory({allocator.ENV: "system"}) is False


@pytest.mark.skipif(not GLIBC, reason="mallopt and mallinfo2 are glibc's")
def test_keep_serves_large_tensors_from_the_heap_and_training_is_unchanged():
    kept, system = _child("keep"), _child("system")
    assert kept["kept"] is True and system["kept"] is False
    assert system["mmapped"] >= 64 << 20                              # glibc's default: a fresh mmap
    assert kept["mmapped"] == 0                                       # kept: from the heap, reusable
    assert kept["digest"] == system["digest"]                         # same weights, bit for bit


ENTRY_CHILD = r"""
import ctypes, os, sys
from mmrec.entry import configure_threads
configure_threads(os.devnull, torch=False)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
MALLINFO

libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblkhd                                   # bytes in mmap'ed blocks
block = libc.malloc(64 << 20)
print(libc.mallinfo2().hblkhd - before)
""".replace("MALLINFO", MALLINFO)


@pytest.mark.skipif(not GLIBC, reason="the stage entry applies mallopt on glibc only")
@pytest.mark.parametrize("setting, mmapped", [("keep", False), ("system", True)])
def test_stage_entry_applies_the_setting(setting, mmapped):
    out = subprocess.run([sys.executable, "-c", ENTRY_CHILD], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, allocator.ENV: setting}, check=True)
    assert (int(out.stdout.strip()) >= 64 << 20) is mmapped


def test_stage_entry_reports_a_bad_setting_naming_the_variable():
    from mmrec.entry import CliError, configure_threads

    old = os.environ.get(allocator.ENV)
    os.environ[allocator.ENV] = "bogus"
    try:
        with pytest.raises(CliError, match="MMREC_MALLOC='bogus'"):
            configure_threads(os.devnull, torch=False)
    finally:
        if old is None:
            os.environ.pop(allocator.ENV)
        else:
            os.environ[allocator.ENV] = old
