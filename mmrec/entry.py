"""How a stage process starts and fails: thread pools sized first, the stage lock held, one
`mmrec: error: ...` line instead of a traceback. The stage scripts and the `mmrec` command share
it; it imports nothing of the library at module level, so a stage's code dependencies (dvc.yaml)
are its own package's, not the command line's.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


#: Set to 1 (or pass --debug) to see the full traceback behind an `mmrec: error:` line.
DEBUG_ENV = "MMREC_DEBUG"
_HINT = f"(run again with --debug or {DEBUG_ENV}=1 for the traceback)"


def debug_requested(argv: Sequence[str] = ()) -> bool:
    """True when `--debug` is among `argv` or MMREC_DEBUG is set to anything but "" / "0"."""
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_message(err: BaseException) -> str:
    """The text after `mmrec: error: `.

    Our own errors (CliError, ValueError, OSError and their kin) already name the file, line or
    key and the fix, so they are shown as they are. Anything else is a bug or an unforeseen
    input: its type and the innermost project frame (file:line) are added, so the report is
    useful without the traceback.
    """
    text = str(err) or type(err).__name__
    if isinstance(err, (CliError, ValueError, OSError)) and not isinstance(err, UnicodeError):
        return text
    import traceback  # only on the error path: `mmrec recommend` starts without it

    frames = traceback.extract_tb(err.__traceback__)
    # The innermost frame outside installed libraries: where our code (or input) went wrong.
    ours = [f for f in frames if "site-packages" not in f.filename
            and not f.filename.startswith((sys.prefix, sys.base_prefix))] or frames
    where = f" (at {ours[-1].filename}:{ours[-1].lineno})" if ours else ""
    return f"{type(err).__name__}: {text}{where}"


def _report(err: BaseException) -> None:
    print(f"mmrec: error: {error_message(err)}\n{_HINT}", file=sys.stderr)


def configure_threads(params_path: str | os.PathLike = "params.yaml", *, torch: bool = True):
    """Size every thread pool of this process from its CPU budget (mmrec.threads): the
    environment first, so polars, BLAS and child processes read it when they load, then torch's
    and FAISS's pools. Called at every stage entry before anything imports polars or numpy.
    `torch=False` (stages that never use torch) leaves torch unimported."""
    from mmrec.threads import apply_plan, configure_environment, read_params_threads

    try:
        plan = configure_environment(read_params_threads(params_path))
    except ValueError as err:
        raise CliError(str(err)) from None
    apply_plan(plan, import_torch=torch)
    return plan


def threads_line() -> str:
    """The pool sizes in effect, as one summary line (`threads: budget 2 of 2 CPUs; ...`)."""
    from mmrec.threads import describe, pool_sizes

    return describe(pool_sizes())


def stage_main(main: Callable[[], Any], *, torch: bool = True) -> None:
    """Run a stage script's `main` with the CLI's error path: a failure prints one
    `mmrec: error: ...` message (exit status 1) instead of a traceback, which `--debug` or
    MMREC_DEBUG=1 brings back. `--debug` is removed from sys.argv before `main` runs.

    Thread pools are sized first (configure_threads), so stage scripts import the library
    inside `main`, after that; the sizes in effect are printed after the stage's own summary.
    `torch=False` for a stage that never imports torch (see configure_threads)."""
    debug = debug_requested(sys.argv[1:])
    sys.argv = [a for a in sys.argv if a != "--debug"]
    try:
        configure_threads("params.yaml", torch=torch)  # DVC runs stage scripts from the project root
        from mmrec.io import stage_lock

        with stage_lock("."):
            main()
        if os.environ.get("RANK", "0") == "0":
            print(threads_line())
    except KeyboardInterrupt:
        print("mmrec: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - every failure gets the same clean report
        if debug:
            raise
        _report(err)
        sys.exit(1)


def model_argument(stage: str) -> str:
    """The one argument of a per-model stage script (`python stages/<stage>.py <model>`), or exit
    with its usage line. Whether the name is a `train.models` entry is the stage's own check."""
    if len(sys.argv) != 2:
        sys.exit(f"usage: python stages/{stage}.py <model>   (a name listed in train.models)")
    return sys.argv[1]
