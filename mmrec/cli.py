"""The `mmrec` command: run pipeline stages, recommend for a user, inspect any Parquet artifact.

    mmrec run <stage> [model]          params | ingest | extract | teacher | train | evaluate | report | recommend
    mmrec recommend --model sasrec --user A1B2C3 -k 10 [--json]     (from recommend@sasrec's export)
    mmrec recommend --model sasrec --history ITEM1,ITEM2 -k 10      (ad hoc: scored by the model)
    mmrec inspect data/sample/ingest/items.parquet [-n 5]
    mmrec paired data/sample/results/odmt data/sample/results/sasrec [-k 10] [--json]

A failure prints one `mmrec: error: ...` line naming the file, line or key; add --debug (or set
MMREC_DEBUG=1) for the traceback. The stage scripts in stages/ report errors the same way.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

#: Stages whose process never imports torch (their thread setup must not import it either).
TORCH_FREE_STAGES = frozenset({"params", "ingest"})
# Stage name -> (module with `run(params, root, ...)`, whether it takes a model name).
# Imported lazily so a stage whose package is missing fails only when it is used.
STAGES: dict[str, tuple[str, bool]] = {
    "params": ("mmrec.config", False),
    "ingest": ("mmrec.data.stage", False),
    "extract": ("mmrec.features.stage", False),
    "teacher": ("mmrec.teacher.stage", False),
    "train": ("mmrec.train.stage", True),
    "evaluate": ("mmrec.evaluate.stage", True),
    "report": ("mmrec.report.stage", False),
    "recommend": ("mmrec.serving.export", True),
}


from mmrec.entry import (  # noqa: F401 - re-exported: the command's error path and stage entry
    DEBUG_ENV,
    CliError,
    _report,
    configure_threads,
    debug_requested,
    error_message,
    stage_main,
    threads_line,
)


def _params(path: str):
    from mmrec.config import ParamsError, load_params

    try:
        return load_params(path)
    except ParamsError as err:
        raise CliError(str(err)) from None


def run_stage(stage: str, model: str | None, params_path: str = "params.yaml", root: str = ".") -> Any:
    """Call `mmrec.<pkg>.stage.run` of one stage (the same function the DVC stage script calls)."""
    if stage not in STAGES:
        raise CliError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    module_name, takes_model = STAGES[stage]
    if model is not None and not takes_model:
        raise CliError(f"stage {stage!r} takes no model argument")
    configure_threads(params_path, torch=stage not in TORCH_FREE_STAGES)  # before polars loads
    params = _params(params_path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CliError(f"stage {stage!r} is not available: cannot import {module_name} ({err})") from None
    from mmrec.io import StageLockedError, stage_lock

    try:
        # one model's stage writes only that entry's outputs: models train side by side
        with stage_lock(root, entry=model):
            result = module.run(params, Path(root), model) if takes_model else module.run(params, Path(root))
    except StageLockedError as err:
        raise CliError(str(err)) from None
    if isinstance(result, dict):
        from mmrec.threads import pool_sizes

        result["threads"] = pool_sizes()  # what the run used (train.common.threads included)
    return result


def _note(text: str) -> None:
    print(f"mmrec: note: {text}", file=sys.stderr)


def _item_indices(items_path: Path, raw_ids: list[str]) -> list[int]:
    """item_idx of raw item ids, in the given order; an unknown id is a CliError naming it."""
    from mmrec.serving.lookup import read_matching

    if not items_path.exists():
        raise CliError(f"{items_path}: not found (run the ingest stage first)")
    found = read_matching(items_path, "item_id", raw_ids, ["item_id", "item_idx"]).to_pylist()
    index = {r["item_id"]: int(r["item_idx"]) for r in found}
    unknown = [i for i in raw_ids if i not in index]
    if unknown:
        raise CliError(f"--history: item id(s) {', '.join(map(repr, unknown[:5]))} not in {items_path}")
    return [index[i] for i in raw_ids]


def recommend(model: str, user: str | None = None, k: int = 10, params_path: str = "params.yaml",
              root: str = ".", mask_history: bool | None = None,
              history: list[str] | None = None) -> dict[str, Any]:
    """Top-k items for a raw user id, with the user's recent history, as a JSON-ready dict.

    A known user is answered from `recommend@<model>`'s index (recommendations.sqlite: a few
    primary-key reads, no torch, no model) when it is there, fresh, holds at least k items and was
    masked the same way; otherwise (said on stderr) the model scores the user's history. An ad-hoc
    `history` (raw item ids, oldest first) is always scored by the model.
    """
    from mmrec import paths
    from mmrec.serving.lookup import item_rows, user_history
    from mmrec.serving.index import INDEX_FILE, ExportUnusable, answer, answer_from_index

    _check_request(user, history, k)
    params = _params(params_path)
    rootp = Path(root)
    try:
        paths.check_model(params.train.models, model)
    except KeyError as err:
        raise CliError(err.args[0]) from None
    ingest = paths.ingest_dir(params, rootp)
    # Serving, unlike the evaluation protocol (evaluate.mask_history), does not recommend what the
    # user already has unless asked (recommend.mask_history, --no-mask).
    mask = params.recommend.mask_history if mask_history is None else mask_history
    times = user_idx = None
    if user is not None:
        index = paths.recommend_dir(params, model, rootp) / INDEX_FILE
        try:
            return answer_from_index(index, rootp, model=model, user=user, k=k, mask_history=mask)
        except ExportUnusable as why:
            _note(f"{why}; scoring with the model instead (seconds; `dvc repro recommend@{model}` "
                  f"or `mmrec run recommend {model}` writes the export)")
        except KeyError as err:
            raise CliError(str(err.args[0])) from None
        try:
            user_idx, rows = user_history(ingest / "interactions.parquet", user)
        except (KeyError, FileNotFoundError) as err:
            raise CliError(str(err.args[0] if err.args else err)) from None
        items = [int(i) for i in rows["item_idx"].to_pylist()]
        times = rows["timestamp"].to_pylist() if "timestamp" in rows.column_names else None
    else:
        items = _item_indices(ingest / "items.parquet", history)
    from mmrec.serving.recommend import top_k
    from mmrec.io import pick_device
    from mmrec.models import checkpoint

    mdir = paths.model_dir(params, model, rootp)
    if not (mdir / "model.pt").exists():
        raise CliError(f"{mdir / 'model.pt'}: not found (run `mmrec run train {model}` first)")
    net = checkpoint.load_model(mdir, params, pick_device(params.device), root=rootp)
    max_len = checkpoint.model_max_len(net)
    ids, scores = top_k(net, items, k, max_len, mask_history=mask)
    shown = item_rows(ingest / "items.parquet", sorted(set(ids) | set(items[-max_len:])))
    return answer(model, user, user_idx, len(items), mask, "model", items, times, max_len, ids, scores, shown)


def _check_request(user: str | None, history: list[str] | None, k: int) -> None:
    if k < 1:
        raise CliError(f"-k must be >= 1, got {k}")
    if (user is None) == (history is None):
        raise CliError("give exactly one of --user (a known user) or --history (ad-hoc item ids)")
    if history is not None and not history:
        raise CliError("--history: give at least one item id")


def quick_recommend(model: str, user: str, k: int, params_path: str = "params.yaml", root: str = ".",
                    mask_history: bool | None = None) -> dict[str, Any] | None:
    """`recommend` for a known user from the export's index, reading params.yaml as plain YAML
    (no validation: pydantic alone costs more than the whole answer), or None when this path
    cannot answer (a setting it needs is not written out, no usable index): `recommend` then
    validates params, explains on stderr and falls back to the model."""
    from mmrec import paths
    from mmrec.serving.index import (
        DEFAULT_MASK_HISTORY,
        INDEX_FILE,
        ExportUnusable,
        answer_from_index,
    )
    from mmrec.rawparams import serving_view

    view = serving_view(params_path)
    if view is None or k < 1 or model not in view.train.models:
        return None
    mask = view.recommend.get("mask_history", DEFAULT_MASK_HISTORY) if mask_history is None else mask_history
    if not isinstance(mask, bool):
        return None
    index = paths.recommend_dir(view, model, root) / INDEX_FILE
    try:
        return answer_from_index(index, root, model=model, user=user, k=k, mask_history=mask)
    except ExportUnusable:
        return None
    except KeyError as err:
        raise CliError(str(err.args[0])) from None


def _finite_or_null(obj: Any) -> Any:
    """`obj` with every NaN/inf float as None: strict JSON (jq, duckdb, JavaScript reject NaN),
    where "no interval" (one seed a side, identical seed-pair differences) reads as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def _clip(text: Any, width: int = 80) -> str:
    """One printable line: terminal escapes and control characters (from raw titles) removed."""
    from mmrec.data.text import strip_control

    text = " ".join(strip_control(str(text or "")).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_recommendations(rec: dict[str, Any]) -> None:
    if rec["user_id"] is None:
        print(f"ad-hoc history of {rec['n_interactions']} items; as the model reads it, oldest first:")
    else:
        print(f"user {_clip(rec['user_id'])} (user_idx {rec['user_idx']}): {rec['n_interactions']} interactions; "
              f"recent history, oldest first:")
    for n, h in enumerate(rec["history"], 1):
        print(f"  {n:>3}. [{_clip(h['item_id'])}] {_clip(h['text'])}\n"
              f"       image: {_clip(h['image_path'], 200) or '-'}")
    masked = "history masked" if rec["mask_history"] else "history not masked"
    source = {"export": ", from the export", "model": ", scored by the model"}.get(rec.get("source", ""), "")
    print(f"top-{len(rec['recommendations'])} by {rec['model']} ({masked}){source}:")
    for r in rec["recommendations"]:
        print(f"  {r['rank']:>3}. score {r['score']:8.4f} [{_clip(r['item_id'])}] {_clip(r['text'])}\n"
              f"       image: {_clip(r['image_path'], 200) or '-'}")


def inspect_parquet(path: str, n: int = 5) -> str:
    """Schema, row count, writer metadata and the first `n` rows of a Parquet file, as text."""
    import polars as pl
    import pyarrow.parquet as pq

    from mmrec.io import read_parquet_metadata

    p = Path(path)
    if not p.exists():
        raise CliError(f"{p}: not found")
    try:
        meta = pq.ParquetFile(p).metadata
    except Exception as err:  # pyarrow raises several types for non-Parquet input
        raise CliError(f"{p}: not a readable Parquet file ({err})") from None
    lines = [f"{p}: {meta.num_rows:,} rows, {meta.num_columns} columns, {meta.num_row_groups} row group(s)",
             "schema:"]
    schema = pl.read_parquet_schema(p)
    width = max((len(c) for c in schema), default=0)
    lines += [f"  {c:<{width}}  {dtype}" for c, dtype in schema.items()]
    extra = read_parquet_metadata(p)
    if extra:
        lines.append("metadata:")
        lines += [f"  {k}: {_clip(json.dumps(v, sort_keys=True), 200)}" for k, v in sorted(extra.items())]
    head = pl.scan_parquet(p).head(n).collect()
    with pl.Config(tbl_cols=-1, tbl_width_chars=160, fmt_str_lengths=40, fmt_table_cell_list_len=4):
        lines += [f"first {head.height} rows:", str(head)]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mmrec", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true",
                    help=f"show the traceback behind an error (or set {DEBUG_ENV}=1)")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.add_argument("--root", default=".", help="project root holding data/ (default: .)")

    p_run = sub.add_parser("run", help="run one pipeline stage (what dvc repro runs)")
    p_run.add_argument("stage", help=", ".join(STAGES))
    p_run.add_argument("model", nargs="?", help="train/evaluate: one train.models entry (default: all)")
    common(p_run)

    p_rec = sub.add_parser("recommend", help="top-k items for one user (or an ad-hoc history)")
    p_rec.add_argument("--model", required=True, help="a train.models entry with a trained model.pt")
    who = p_rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="raw user id (as in the source data): read from recommend@<model>'s export")
    who.add_argument("--history", type=lambda v: [i.strip() for i in v.split(",") if i.strip()],
                     help="comma-separated raw item ids, oldest first: scored by the model")
    p_rec.add_argument("-k", type=int, default=10)
    p_rec.add_argument("--json", action="store_true", help="machine-readable output")
    p_rec.add_argument("--mask", action=argparse.BooleanOptionalAction, default=None,
                       help="leave out items already in the history (default: recommend.mask_history)")
    common(p_rec)

    p_ins = sub.add_parser("inspect", help="schema, row count and head of a Parquet artifact")
    p_ins.add_argument("path")
    p_ins.add_argument("-n", type=int, default=5, help="rows to show (default 5)")

    p_pair = sub.add_parser("paired", help="paired differences A - B of two results folders (same users)")
    p_pair.add_argument("a", help="results folder of A (holds ranks.parquet), or the ranks.parquet itself; "
                                  "several, comma-separated, for A's seeds (pooled)")
    p_pair.add_argument("b", help="results folder(s) of B, likewise")
    p_pair.add_argument("-k", type=int, default=10, help="cutoff of Recall/NDCG/MRR (default 10)")
    p_pair.add_argument("--split", default="test", help="test (default) or valid")
    # Defaults (None here) are evaluate.bootstrap's, evaluate.equivalence_margin's and
    # evaluate.popularity_groups' defaults (mmrec.metrics.params), not read here so the CLI
    # starts without pydantic.
    p_pair.add_argument("--bootstrap", type=int, help="resamples (default 10000, as evaluate.bootstrap)")
    p_pair.add_argument("--margin", type=float,
                        help="equivalence margin (default 0.005, as evaluate.equivalence_margin)")
    p_pair.add_argument("--targets", default="all",
                        help="all (default), or only the users whose target is in one popularity group "
                             "of the evaluate breakdown: cold (never in training) or Q1 (rarest) .. Q4")
    p_pair.add_argument("--items", help="items.parquet giving training popularity for --targets "
                                        "(default: data/<name>/ingest/items.parquet of A's results folder)")
    p_pair.add_argument("--groups", type=int,
                        help="warm popularity groups for --targets, as evaluate.popularity_groups (default 4)")
    p_pair.add_argument("--json", action="store_true", help="machine-readable output")
    return ap


#: Exit status when the reader of stdout went away (`mmrec recommend ... | head`): what a
#: process killed by SIGPIPE reports to the shell (128 + 13).
EXIT_BROKEN_PIPE = 141


def _closed_pipe() -> int:
    """The reader of stdout closed it early: stop quietly, as Python's documentation advises
    (signal module, "Note on SIGPIPE"): point stdout at devnull so the interpreter's own flush
    at exit cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)  # accepted anywhere on the line, not only before the command
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        if args.command == "run":
            result = run_stage(args.stage, args.model, args.params, args.root)
            print(json.dumps(result, default=str, sort_keys=True))
        elif args.command == "recommend":
            rec = None
            if args.user is not None:
                rec = quick_recommend(args.model, args.user, args.k, args.params, args.root, args.mask)
            if rec is None:
                rec = recommend(args.model, args.user, args.k, args.params, args.root,
                                mask_history=args.mask, history=args.history)
            if args.json:
                print(json.dumps(rec, default=str))
            else:
                print_recommendations(rec)
        elif args.command == "inspect":
            print(inspect_parquet(args.path, args.n))
        elif args.command == "paired":
            from mmrec.report.paired import format_paired, paired_folders

            if (args.k < 1 or (args.groups is not None and args.groups < 1)
                    or (args.bootstrap is not None and args.bootstrap < 100)
                    or (args.margin is not None and not 0 < args.margin < math.inf)):
                raise CliError("paired: -k and --groups must be >= 1, --bootstrap >= 100, --margin finite and > 0")
            given = {"n_boot": args.bootstrap, "margin": args.margin, "items": args.items,
                     "n_groups": args.groups}
            result = paired_folders(args.a.split(","), args.b.split(","), args.k, args.split,
                                    targets=args.targets,
                                    **{key: v for key, v in given.items() if v is not None})
            print(json.dumps(_finite_or_null(result), sort_keys=True, allow_nan=False) if args.json
                  else format_paired(result))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
    except BrokenPipeError:
        return _closed_pipe()
    except CliError as err:
        print(f"mmrec: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a stage failing: same clean report as stage scripts
        if debug:
            raise
        _report(err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
