"""Thread budget: cgroup quota parsing (v2 and v1, from fixture files), the affinity bound,
override precedence, and the rule that the pools running at once never exceed the budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmrec import threads as T

ROOT = Path(__file__).resolve().parents[1]


def _v2(tmp_path: Path, cpu_max: dict[str, str], self_path: str = "/") -> tuple[Path, Path]:
    """A fake unified hierarchy: {relative dir: cpu.max text}, and /proc/self/cgroup naming `self_path`."""
    root = tmp_path / "cg"
    for rel, text in cpu_max.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "cpu.max").write_text(text + "\n")
    proc = tmp_path / "cgroup"
    proc.write_text(f"0::{self_path}\n")
    return root, proc


@pytest.mark.parametrize("text, cpus", [
    ("max 100000", None),          # no quota
    ("200000 100000", 2.0),
    ("150000 100000", 1.5),
    ("50000 100000", 0.5),
    ("max", None),
    ("garbage", None),
])
def test_parse_cpu_max(text, cpus):
    assert T.parse_cpu_max(text) == cpus


def test_parse_cfs():
    assert T.parse_cfs("-1", "100000") is None
    assert T.parse_cfs("300000", "100000") == 3.0
    assert T.parse_cfs("x", "100000") is None


def test_cgroup_v2_quota_of_own_cgroup(tmp_path):
    root, proc = _v2(tmp_path, {".": "max 100000", "user.slice/job": "150000 100000"}, "/user.slice/job")
    assert T.cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v2_tightest_ancestor_wins(tmp_path):
    # A parent's quota limits every child, even one that says "max" itself.
    root, proc = _v2(tmp_path, {"a": "100000 100000", "a/b": "max 100000"}, "/a/b")
    assert T.cgroup_cpu_limit(root, proc) == 1.0


def test_cgroup_v2_unlimited(tmp_path):
    root, proc = _v2(tmp_path, {".": "max 100000"}, "/")
    assert T.cgroup_cpu_limit(root, proc) is None


def test_cgroup_v1_quota(tmp_path):
    root = tmp_path / "cg"
    d = root / "cpu,cpuacct" / "docker" / "abc"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("250000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    assert T.cgroup_cpu_limit(root, proc) == 2.5


def test_no_cgroup_files(tmp_path):
    assert T.cgroup_cpu_limit(tmp_path / "none", tmp_path / "none.txt") is None


@pytest.mark.parametrize("affinity, quota, cpus", [
    (8, None, 8),     # no quota: the affinity
    (8, 2.0, 2),      # the quota bounds it
    (2, 6.0, 2),      # the affinity bounds it (taskset / cpuset)
    (4, 1.5, 1),      # a fractional quota rounds down
    (4, 0.5, 1),      # never below one
])
def test_available_cpus(affinity, quota, cpus):
    assert T.available_cpus(affinity, quota, read_cgroup=False) == cpus


def test_available_cpus_follows_affinity():
    """A process pinned to one CPU (taskset) sees a budget of one."""
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from mmrec import threads; print(threads.available_cpus())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert out.stdout.strip() == "1"


def test_precedence_env_over_params_over_auto():
    assert T.plan_threads("auto", env={}, available=4).budget == 4
    assert T.plan_threads("auto", env={}, available=4).source == "auto"
    p = T.plan_threads(3, env={}, available=4)
    assert (p.budget, p.source, p.requested) == (3, "params", 3)
    e = T.plan_threads(3, env={"MMREC_THREADS": "2"}, available=4)
    assert (e.budget, e.source) == (2, "env")
    assert T.plan_threads(3, env={"MMREC_THREADS": "auto"}, available=4).budget == 3


def test_explicit_budget_is_capped_at_available():
    p = T.plan_threads(16, env={}, available=2)
    assert (p.budget, p.requested) == (2, 16)


def test_auto_shares_cpus_between_torchrun_ranks():
    assert T.plan_threads("auto", env={"LOCAL_WORLD_SIZE": "2"}, available=4).budget == 2
    assert T.plan_threads("auto", env={"LOCAL_WORLD_SIZE": "4"}, available=2).budget == 1


@pytest.mark.parametrize("bad", [0, -1, "two", True])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError, match="threads"):
        T.plan_threads(bad, env={}, available=2)
    with pytest.raises(ValueError, match="MMREC_THREADS"):
        T.plan_threads("auto", env={"MMREC_THREADS": str(bad)}, available=2)


@pytest.mark.parametrize("available", [1, 2, 3, 8])
@pytest.mark.parametrize("requested_workers", [0, 1, 2, 16])
def test_total_never_exceeds_budget(available, requested_workers):
    plan = T.plan_threads("auto", env={}, available=available)
    # torch's intra-op pool and each pool that runs between torch calls fit the budget alone;
    # the inter-op pool is kept to one idle thread.
    assert max(plan.torch, plan.polars, plan.faiss, plan.blas) <= plan.budget <= available
    assert plan.torch_interop == 1
    assert all(int(v) <= plan.budget for v in plan.env().values())
    # a loader's workers run beside the model: together within the budget, main keeps one
    workers, main = T.loader_split(plan.budget, requested_workers)
    assert workers + main <= plan.budget and main >= 1 and 0 <= workers <= requested_workers


def test_configure_environment_lowers_never_raises(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")      # a launcher pinned 1 on purpose: kept
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "64")  # more than the budget: lowered
    monkeypatch.setenv("MMREC_THREADS", "2")
    monkeypatch.delenv("POLARS_MAX_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv(T.POLARS_MALLOC_ENV, "thp:always")  # e.g. the operator's: kept, ours after
    monkeypatch.setattr(T, "_configured", None)
    plan = T.configure_environment("auto")
    assert plan.budget == min(2, T.available_cpus())
    assert os.environ["OMP_NUM_THREADS"] == "1" and plan.torch == 1  # torch honours the pin
    assert os.environ["OPENBLAS_NUM_THREADS"] == str(plan.budget)
    assert os.environ["POLARS_MAX_THREADS"] == str(plan.budget)
    assert T.budget() == plan.budget
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # idle OpenMP threads sleep, not spin
    assert os.environ[T.POLARS_MALLOC_ENV] == f"thp:always,{T.POLARS_MALLOC_CONF}"


def test_stage_entry_sizes_polars_before_import(tmp_path):
    """In a fresh process, the entry's environment reaches polars (read once, at its import)
    and torch, and the sizes are read back for the summary."""
    (tmp_path / "params.yaml").write_text("threads: 1\n")
    code = ("from mmrec.cli import configure_threads, threads_line; configure_threads('params.yaml'); "
            "import polars, torch; print(polars.thread_pool_size(), torch.get_num_threads(), "
            "torch.get_num_interop_threads()); print(threads_line())")
    env = {k: v for k, v in os.environ.items() if k not in (*T.POOL_ENV, T.ENV, "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    sizes, line = out.stdout.strip().splitlines()
    assert sizes == "1 1 1"
    assert line.startswith("threads: budget 1 of ") and "torch 1 (+1 inter-op)" in line and "polars 1" in line


@pytest.mark.parametrize("inherited", [None, "dirty_decay_ms:500,muzzy_decay_ms:1000"])
def test_stage_entry_makes_polars_return_freed_memory(inherited):
    """The allocator setting reaches polars' jemalloc (read at its import), also over the
    defaults a parent that imported polars leaves in the environment: the pages of freed
    tables leave the process's RSS within a fraction of a second (polars' defaults: ~20 of
    380 MiB after 0.3 s)."""
    code = ("import time\nfrom mmrec.threads import configure_environment; configure_environment()\n"
            "import polars as pl\n"
            "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096 >> 20\n"
            "parts = [pl.int_range(8000, eager=True, dtype=pl.Int64) * 3 for _ in range(6000)]\n"
            "before = rss(); del parts; time.sleep(0.5); print(before - rss())")
    env = {k: v for k, v in os.environ.items() if k != T.POLARS_MALLOC_ENV}
    if inherited:
        env[T.POLARS_MALLOC_ENV] = inherited
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "PYTHONPATH": str(ROOT)})
    assert int(out.stdout) >= 250  # of the ~380 MiB freed


def test_malloc_conf_is_appended_once():
    assert T.malloc_conf(None) == T.POLARS_MALLOC_CONF
    assert T.malloc_conf("thp:always") == f"thp:always,{T.POLARS_MALLOC_CONF}"
    assert T.malloc_conf(T.malloc_conf("thp:always")) == f"thp:always,{T.POLARS_MALLOC_CONF}"


def _run_stage_script(stage: str, project: Path) -> tuple[subprocess.CompletedProcess, bool]:
    """stages/<stage>.py run in `project` as DVC runs it; also whether torch got imported."""
    code = ("import runpy, sys\n"
            f"sys.argv = [{str(ROOT / 'stages' / f'{stage}.py')!r}]\n"
            "try:\n"
            "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "finally:\n"
            "    print('torch imported:', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    return out, out.stdout.strip().splitlines()[-1] == "torch imported: True"


def test_ingest_stage_never_imports_torch(tmp_path):
    """The ingest stage script, run as DVC runs it, writes its tables without ever importing
    torch (thread setup included): torch would add ~0.5 GB to ingest's peak memory."""
    fixture = ROOT / "tests" / "fixtures" / "data" / "amazon2018"
    (tmp_path / "params.yaml").write_text(
        f"data: {{name: t, source: amazon2018, raw_dir: {fixture}, min_user_interactions: 1, require: []}}\n"
        "threads: 1\n")
    _, torch_imported = _run_stage_script("ingest", tmp_path)
    assert (tmp_path / "data" / "t" / "ingest" / "interactions.parquet").exists()
    assert not torch_imported


def test_report_stage_never_imports_torch(tmp_path):
    """The report stage only reads metrics, logs and ranks: importing torch would add seconds to
    every `dvc repro`."""
    import yaml

    from mmrec.config import parse_params
    from fake_run import write_fake_run

    raw = {"data": {"name": "tiny"}, "device": "cpu", "threads": 1,
           "train": {"models": ["sasrec", "kdsr"], "common": {"max_len": 5}},
           "evaluate": {"ks": [1, 5, 10], "popularity_groups": 2, "history_buckets": [3, 6]}}
    write_fake_run(parse_params(raw), tmp_path, ["sasrec", "kdsr"], n_users=60, n_items=80, epochs=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out, torch_imported = _run_stage_script("report", tmp_path)
    assert (tmp_path / "data" / "tiny" / "report" / "report.html").exists()
    assert "report: 2 models" in out.stdout
    assert not torch_imported
