"""Thread discipline: one CPU budget per process, and every thread pool sized from it.

A stage process holds several thread pools that each default to "all cores of the machine":
torch's intra-op and inter-op pools, DataLoader worker processes, polars, FAISS (OpenMP), and the
BLAS/OpenMP libraries that numpy, pyarrow and child processes load. On an idle machine that is
harmless; on a shared one (load 5.5 on 2 cores) the pools spin against each other and against
the other work, and every stage ran 4-8x slower while burning 2.3x the CPU seconds. So:

- `available_cpus()` is what this process may really use: its CPU affinity, bounded by the
  cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`) of its cgroup and
  every ancestor, because a container's quota is not visible to `os.cpu_count()`.
- `plan_threads()` turns it into a budget and sizes the pools so that the threads that can run
  at the same time never exceed the budget.

Precedence of the budget (the first that is set wins):

1. the environment variable `MMREC_THREADS` (an integer, or `auto`): the operator's override
   for one run, e.g. several trainings sharing one machine;
2. the top-level `threads:` key of params.yaml (an integer, or `auto`, the default);
3. `auto`: `available_cpus()`, shared equally by the torchrun processes on this machine
   (`LOCAL_WORLD_SIZE`).

An explicit budget is capped at `available_cpus()`: asking for more threads than CPUs is
exactly the oversubscription this module exists to prevent. `train.common.threads` is a
different setting: it fixes torch's intra-op thread count *during training* because the
trained weights depend on it (bit-for-bit repeatability, mmrec.train.repro). When non-zero it
wins over the budget for that one pool (the stage summary then says `oversubscribed`); set it
to 0 to let the budget decide.

Idle OpenMP threads are also told to sleep rather than spin (OMP_WAIT_POLICY=PASSIVE unless set):
a spinning thread holds a CPU that the machine's other work needs.

The budget only decides sizes; it does not change which computation is done. Environment
variables are set before the libraries that read them are imported (`configure_environment`,
called first at every stage entry), in-process pools after (`apply_plan`).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Union

#: The operator's override of the budget (an integer, or "auto").
ENV = "MMREC_THREADS"
#: Environment variables read by the libraries of this process (at their import) and of its
#: children: OpenMP (torch, faiss), MKL, OpenBLAS (numpy), polars, numexpr. Arrow's CPU pool
#: also reads OMP_NUM_THREADS.
POOL_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
            "POLARS_MAX_THREADS")

#: polars' allocator (its own jemalloc, configured from this variable when polars is imported).
#: polars' defaults keep freed pages in RSS for 0.5 s, then 1 s more as "muzzy" pages, so a
#: polars step that builds a new table from an old one holds both: the ingest benchmark peaked
#: at 675-716 MiB with them and ~550 MiB with this (BENCHMARKS.md, Ingest). A background thread
#: hands freed pages back within 0.1 s, off the threads doing the work (purging at every free
#: cost ~3 CPU s there).
POLARS_MALLOC_ENV = "_RJEM_MALLOC_CONF"
POLARS_MALLOC_CONF = "background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0"

Threads = Union[int, str]
#: OpenMP's wait policy at every stage entry unless the environment sets one (see configure_environment).
WAIT_POLICY = "PASSIVE"

#: The plan of the last configure_environment() in this process (None before any stage entry).
_configured: Optional["ThreadPlan"] = None


# --------------------------------------------------------------------------------------------
# What this process may use
# --------------------------------------------------------------------------------------------

def _cgroup_paths(proc_cgroup: str) -> tuple[Optional[str], Optional[str]]:
    """(v2 path, v1 cpu-controller path) of this process from the text of /proc/self/cgroup."""
    v2 = v1 = None
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _ancestors(base: Path, rel: Optional[str]) -> list[Path]:
    """`base/rel` and each of its parents up to `base` (a quota anywhere above limits us too)."""
    out = [base]
    if rel:
        parts = [p for p in rel.split("/") if p and p != ".."]
        out += [base.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)]
    return out


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def parse_cpu_max(text: str) -> Optional[float]:
    """CPUs allowed by a cgroup v2 `cpu.max` line ("<quota> <period>" or "max <period>");
    None when unlimited or unreadable."""
    fields = text.split()
    if not fields or fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota: str, period: str) -> Optional[float]:
    """CPUs allowed by cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota -1: unlimited)."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup",
                     proc_cgroup: str | os.PathLike = "/proc/self/cgroup") -> Optional[float]:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), the tightest over the cgroup
    and its ancestors, v2 and v1 alike; None when no quota applies or none can be read."""
    root = Path(root)
    v2_rel, v1_rel = _cgroup_paths(_read(Path(proc_cgroup)) or "")
    limits: list[float] = []
    # v2 (unified): root/<path>/cpu.max. In a container with its own cgroup namespace the path
    # reads "/" and the container's own limit sits at the root of the mount.
    for d in _ancestors(root, v2_rel):
        text = _read(d / "cpu.max")
        if text is not None and (lim := parse_cpu_max(text)) is not None:
            limits.append(lim)
    # v1: the cpu controller is mounted as cpu/ or cpu,cpuacct/ (often both, one a link).
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for d in _ancestors(root / mount, v1_rel):
            q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
            if q is not None and p is not None and (lim := parse_cfs(q, p)) is not None:
                limits.append(lim)
    return min(limits) if limits else None


def affinity_cpus() -> int:
    """CPUs this process may be scheduled on (taskset/cpuset), or os.cpu_count() where the OS
    cannot say (macOS)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_cpus(affinity: Optional[int] = None, quota: Optional[float] = None,
                   *, read_cgroup: bool = True) -> int:
    """Whole CPUs this process may use: its affinity bounded by its cgroup quota, at least 1.

    A fractional quota rounds down (1.5 CPUs -> 1): a second busy thread on half a CPU is
    throttled for the rest of each period, which costs more than it gives.
    """
    cpus = affinity_cpus() if affinity is None else affinity
    if quota is None and read_cgroup:
        quota = cgroup_cpu_limit()
    if quota is not None:
        cpus = min(cpus, math.floor(quota))
    return max(1, cpus)


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThreadPlan:
    """The budget and the size of each pool.

    budget:        CPUs this process's threads may keep busy at once.
    source:        where the budget came from: "env" (MMREC_THREADS), "params" (`threads:`) or
                   "auto"; `available` is what affinity and quota allow, `requested` the
                   explicit value before capping (None for auto).
    torch:         torch intra-op threads (the model's matmuls and convolutions).
    torch_interop: torch inter-op threads; 1, since mmrec forks no torch tasks and every idle
                   pool thread is one more to wake and spin.
    polars, faiss, blas: the other in-process pools, and OMP/MKL/OpenBLAS for children. They
                   run between torch calls, not beside them, so each may use the whole budget.
    """

    budget: int
    source: str
    available: int
    requested: Optional[int] = None
    torch: int = 1
    torch_interop: int = 1
    polars: int = 1
    faiss: int = 1
    blas: int = 1

    def env(self) -> dict[str, str]:
        """The environment variables that size the pools of libraries not yet loaded."""
        return {"OMP_NUM_THREADS": str(self.blas), "MKL_NUM_THREADS": str(self.blas),
                "OPENBLAS_NUM_THREADS": str(self.blas), "NUMEXPR_NUM_THREADS": str(self.blas),
                "POLARS_MAX_THREADS": str(self.polars)}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_threads(value: Any, what: str) -> Optional[int]:
    """An explicit thread count (int >= 1), or None for "auto"/unset; raises naming `what`."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    try:
        n = int(str(value).strip()) if not isinstance(value, bool) else -1
    except ValueError:
        n = -1
    if n < 1:
        raise ValueError(f"{what}: expected a positive number of threads or 'auto', got {value!r}")
    return n


def plan_threads(params_threads: Threads | None = "auto", env: Optional[Mapping[str, str]] = None,
                 available: Optional[int] = None) -> ThreadPlan:
    """The budget by precedence (MMREC_THREADS, then params `threads:`, then auto) and the pool
    sizes. `env` defaults to os.environ; `available` to available_cpus()."""
    env = os.environ if env is None else env
    avail = available_cpus() if available is None else max(1, available)
    from_env = _parse_threads(env.get(ENV), ENV)
    from_params = _parse_threads(params_threads, "params threads")
    if from_env is not None:
        source, requested = "env", from_env
    elif from_params is not None:
        source, requested = "params", from_params
    else:
        source, requested = "auto", None
    if requested is None:
        # torchrun starts LOCAL_WORLD_SIZE processes on this machine; each gets its share.
        ranks = max(1, int(env.get("LOCAL_WORLD_SIZE", "1") or 1))
        budget = max(1, avail // ranks)
    else:
        budget = min(requested, avail)
    return ThreadPlan(budget=budget, source=source, available=avail, requested=requested,
                      torch=budget, torch_interop=1, polars=budget, faiss=budget, blas=budget)


def loader_split(budget: int, requested_workers: int, model_on_cpu: bool = True) -> tuple[int, int]:
    """(DataLoader workers, main-process torch threads) for a loop whose workers feed a model:
    workers + main threads <= budget, and the main process keeps at least one thread.

    When the model runs on the CPU it gets the budget first: decoding and preprocessing an
    image costs ~10% of EfficientNet-lite0's time for it (measured, BENCHMARKS.md "Extract"),
    so a worker that takes a whole CPU from the model starves it (on 2 CPUs, 1 worker + 1 model
    thread ran at 0.78x the bare encoder, 0 workers + 2 threads at 1.08x). One worker per 4
    CPUs keeps decoding ahead on larger machines. On a GPU the main process mostly waits, so
    the workers get all but one CPU.
    """
    cap = budget // 4 if model_on_cpu else budget - 1
    workers = max(0, min(requested_workers, cap))
    return workers, max(1, budget - workers)


# --------------------------------------------------------------------------------------------
# Applying it
# --------------------------------------------------------------------------------------------

def read_params_threads(params_path: str | os.PathLike = "params.yaml") -> Threads | None:
    """The raw top-level `threads:` of a params file, read without validating the rest (this
    runs before polars and torch are imported); None when the file or key is absent."""
    import yaml

    try:
        raw = yaml.safe_load(Path(params_path).read_text())
    except (OSError, yaml.YAMLError):
        return None  # load_params reports the broken file properly a moment later
    return raw.get("threads") if isinstance(raw, dict) else None


def configure_environment(params_threads: Threads | None = "auto") -> ThreadPlan:
    """Compute the plan and export it to the environment: for libraries this process has not
    imported yet (polars reads POLARS_MAX_THREADS once, at import) and for child processes
    (DataLoader workers, torchrun ranks). A variable already set to fewer threads is kept:
    lowering is always safe, and tests or launchers pin 1 on purpose. OMP_WAIT_POLICY is set to
    PASSIVE unless already set; polars' allocator is told to return freed memory promptly."""
    plan = plan_threads(params_threads)
    for key, value in plan.env().items():
        current = os.environ.get(key, "")
        if not (current.isdigit() and 0 < int(current) <= int(value)):
            os.environ[key] = value
    # Idle OpenMP threads (torch's, FAISS's) sleep at once instead of spinning for the next
    # parallel region: on a shared machine a spinning thread burns a CPU another process (or
    # our own other pool) needs. Beside 2 busy processes on 2 CPUs, 12 SASRec steps took 8-11 s
    # and 6 CPU s passive against 30-36 s and 14-16 CPU s spinning (BENCHMARKS.md, issue 14).
    # Read by OpenMP when it loads, so only processes that have not loaded it yet see it.
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    os.environ[POLARS_MALLOC_ENV] = malloc_conf(os.environ.get(POLARS_MALLOC_ENV))
    # torch itself sizes its intra-op pool from a pinned OMP_NUM_THREADS: keep honouring it.
    plan = replace(plan, torch=min(plan.torch, int(os.environ["OMP_NUM_THREADS"])))
    global _configured
    _configured = plan
    return plan


def malloc_conf(current: str | None) -> str:
    """`current` with POLARS_MALLOC_CONF appended (jemalloc: the last value of an option wins).

    Appended, not set only when absent: importing polars writes its own defaults into the
    environment, so a process started by one that imported polars inherits them.
    """
    if not current:
        return POLARS_MALLOC_CONF
    return current if current.endswith(POLARS_MALLOC_CONF) else f"{current},{POLARS_MALLOC_CONF}"


def apply_plan(plan: ThreadPlan, *, import_torch: bool = True) -> None:
    """Size torch's intra-op and inter-op pools, and FAISS's OpenMP pool if FAISS is loaded
    (it is imported only by the teacher stage, which sizes it there with `size_faiss`).

    `import_torch=False` sizes torch only if something already imported it: a stage that never
    uses torch (ingest) would otherwise pay ~0.5 GB and a second to import it for nothing; if it
    is imported later anyway, its intra-op pool still follows OMP_NUM_THREADS from the plan."""
    torch = sys.modules.get("torch")
    if torch is None and import_torch:
        import torch
    if torch is not None:
        torch.set_num_threads(plan.torch)
        try:
            torch.set_num_interop_threads(plan.torch_interop)
        except RuntimeError:
            pass  # settable once, before any inter-op work; a second stage in one process keeps it
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(plan.faiss)


def size_faiss(faiss: Any) -> None:
    """Give FAISS's OpenMP pool this process's budget (its own libgomp may have read a larger
    OMP_NUM_THREADS, or the machine's cores, before the stage entry ran)."""
    faiss.omp_set_num_threads(budget())


def budget() -> int:
    """This process's budget as configured at stage entry; without a stage entry (a library
    call, a test) MMREC_THREADS or auto."""
    return _configured.budget if _configured is not None else plan_threads(None).budget


def pool_sizes() -> dict[str, Any]:
    """The pool sizes in effect now, read back from each library (what the summary logs)."""
    out: dict[str, Any] = {"budget": budget(), "cpus_available": available_cpus()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.get_num_threads()
        out["torch_interop"] = torch.get_num_interop_threads()
    pl = sys.modules.get("polars")
    if pl is not None:
        out["polars"] = pl.thread_pool_size()
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        out["faiss"] = faiss.omp_get_max_threads()
    out.update({k.lower(): os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")
                if k in os.environ})
    return out


def describe(sizes: Mapping[str, Any]) -> str:
    """One line for a stage's summary, e.g. `threads: budget 2 of 2 CPUs; torch 2 (+1 inter-op), ...`."""
    parts = [f"torch {sizes['torch']} (+{sizes.get('torch_interop', 1)} inter-op)"] if "torch" in sizes else []
    parts += [f"{k} {sizes[k]}" for k in ("polars", "faiss", "omp_num_threads", "omp_wait_policy") if k in sizes]
    over = " OVERSUBSCRIBED (train.common.threads > budget)" if sizes.get("torch", 0) > sizes["budget"] else ""
    return f"threads: budget {sizes['budget']} of {sizes['cpus_available']} CPUs; " + ", ".join(parts) + over
