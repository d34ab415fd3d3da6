"""Stage `report`: compare every trained model of `train.models` in one place.

Writes `report/report.md`, a self-contained `report/report.html` (plots embedded as base64 PNG)
and the PNG plots themselves. Models without a metrics.json are listed as missing, not dropped
silently; training curves come from each model's train_log.tsv when it exists.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mmrec import paths
from mmrec.evaluate.params import EvaluateConfig
from mmrec.metrics.intervals import mark_holm, metric_intervals, paired_difference
from mmrec.metrics.params import protocol_label
from mmrec.paths import RANKS_FILE
from mmrec.report.paired import align_runs, pair_ranks

#: The metrics the report gives intervals and paired comparisons for.
CI_METRICS = ["recall@10", "ndcg@10"]
COMPARISON_FILE = "comparison.json"
PLOTS = {
    "metrics": "metrics_by_model.png",
    "popularity": "recall_by_popularity.png",
    "curves": "training_curves.png",
    "losses": "loss_components.png",
}


@dataclass
class RunData:
    """What the report knows about the models of one dataset."""

    models: list[str]                                   # train.models, in order
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)   # model -> metrics.json
    logs: dict[str, pl.DataFrame] = field(default_factory=dict)        # model -> train_log.tsv
    dataset_stats: dict[str, Any] = field(default_factory=dict)
    ranks: dict[str, pl.DataFrame] = field(default_factory=dict)       # model -> test ranks
    problems: list[str] = field(default_factory=list)   # unreadable files, named

    @property
    def reported(self) -> list[str]:
        return [m for m in self.models if m in self.metrics]

    @property
    def missing(self) -> list[str]:
        return [m for m in self.models if m not in self.metrics]


def _dataset_stats(report: dict[str, Any]) -> dict[str, Any]:
    """The Table-1 statistics of ingest/report.json (whichever key the ingest stage used)."""
    for key in ("statistics", "stats", "dataset_statistics", "dataset", "table1"):
        value = report.get(key)
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return {k: v for k, v in report.items() if isinstance(v, (int, float, str, bool))}


def read_train_log(path: Path) -> pl.DataFrame:
    """train_log.tsv with every column but `epoch` as Float64 (the train loop writes NaN as `nan`)."""
    df = pl.read_csv(path, separator="\t", infer_schema=False)
    if "epoch" not in df.columns:
        raise ValueError(f"{path}: no `epoch` column")
    return df.with_columns(pl.col("epoch").cast(pl.Int64), pl.exclude("epoch").cast(pl.Float64, strict=False))


def collect(params: EvaluateConfig, root: Path = Path(".")) -> RunData:
    """Read every model's metrics.json and train_log.tsv and the ingest statistics."""
    data = RunData(models=list(params.train.models))
    for model in data.models:
        mpath = paths.results_dir(params, model, root) / "metrics.json"
        if mpath.exists():
            try:
                data.metrics[model] = json.loads(mpath.read_text())
            except ValueError as err:
                data.problems.append(f"{mpath}: not valid JSON ({err}); model left out")
        rk = mpath.parent / RANKS_FILE
        if model in data.metrics and rk.exists():
            try:
                data.ranks[model] = (pl.read_parquet(rk).filter(pl.col("split") == "test")
                                     .select("user_idx", "target", "rank").sort("user_idx"))
            except (pl.exceptions.PolarsError, OSError) as err:
                data.problems.append(f"{rk}: unreadable ({err}); intervals left out")
        lpath = paths.model_dir(params, model, root) / "train_log.tsv"
        if lpath.exists():
            try:
                data.logs[model] = read_train_log(lpath)
            except (pl.exceptions.PolarsError, OSError, ValueError) as err:
                data.problems.append(f"{lpath}: unreadable ({err}); curves left out")
    rpath = paths.ingest_dir(params, root) / "report.json"
    if rpath.exists():
        try:
            ingest = json.loads(rpath.read_text())
            data.dataset_stats = _dataset_stats(ingest)
            unreadable = (ingest.get("images_unreadable") or {}).get("count")
            if unreadable is not None:
                data.dataset_stats["images unreadable at ingest"] = unreadable
        except ValueError as err:
            data.problems.append(f"{rpath}: not valid JSON ({err})")
    else:
        data.problems.append(f"{rpath}: not found; dataset statistics left out")
    for modality in ("text", "image"):
        spath = paths.modality_features_dir(params, modality, root) / "summary.json"
        if spath.exists():
            try:
                s = json.loads(spath.read_text())
            except ValueError as err:
                data.problems.append(f"{spath}: not valid JSON ({err})")
                continue
            if "failed" in s:  # zero vectors stand in for these items (extract.max_failed_fraction)
                data.dataset_stats[f"{modality} inputs that failed to decode"] = (
                    f"{s['failed']} of {s.get('items', 0) - s.get('missing', 0)}")
    return data


def metric_columns(data: RunData, split: str = "test") -> list[str]:
    """`<split>_<metric>@<k>` keys present in any model's metrics, ordered by metric then k."""
    pattern = re.compile(rf"{re.escape(split)}_[a-z]+@\d+")
    keys = {k for m in data.metrics.values() for k in m if pattern.fullmatch(k)}

    def order(key: str) -> tuple[int, int]:
        name, k = key[len(split) + 1:].split("@")
        return ({"recall": 0, "ndcg": 1, "mrr": 2}.get(name, 3), int(k))

    return sorted(keys, key=order)


def comparison_table(data: RunData, split: str = "test") -> pl.DataFrame:
    """One row per reported model, one column per metric (NaN where a model lacks it)."""
    cols = metric_columns(data, split)
    rows = [{"model": m, **{c: float(data.metrics[m].get(c, math.nan)) for c in cols}} for m in data.reported]
    return pl.DataFrame(rows, schema={"model": pl.String, **{c: pl.Float64 for c in cols}})


def relative_improvement(table: pl.DataFrame, baseline: str) -> pl.DataFrame | None:
    """Percent change of every metric over `baseline`'s row; None when the baseline is absent."""
    if baseline not in table["model"].to_list():
        return None
    base = table.filter(pl.col("model") == baseline).row(0, named=True)
    cols = [c for c in table.columns if c != "model"]
    return table.select("model", *[
        (pl.when(pl.lit(base[c]) > 0).then((pl.col(c) / base[c] - 1) * 100).otherwise(None)).alias(c)
        for c in cols])


def paired_comparisons(data: RunData, baseline: str, metrics: list[str], n_boot: int,
                       margin: float) -> list[dict[str, Any]]:
    """Per model: each metric's 95% bootstrap interval and, against `baseline`, the paired
    bootstrap interval of the difference over the users both were tested on, its verdict at
    equivalence margin `margin`, and its Holm-adjusted significance across every comparison of
    the table (one family: all models x all metrics)."""
    rows = []
    base = data.ranks.get(baseline)
    for model in data.reported:
        ranks = data.ranks.get(model)
        if ranks is None:
            continue
        row: dict[str, Any] = {"model": model, "users": ranks.height}
        for metric in metrics:
            row[metric] = metric_intervals(ranks["rank"].to_numpy(), [metric], n_boot)[metric]
            if base is not None and model != baseline:
                both = pair_ranks(ranks, base, (model, baseline))  # same users, same targets
                row[f"{metric}_vs_{baseline}"] = paired_difference(
                    both["rank_a"].to_numpy(), both["rank_b"].to_numpy(), metric, n_boot, margin=margin)
        rows.append(row)
    mark_holm([row[f"{m}_vs_{baseline}"] for row in rows for m in metrics if f"{m}_vs_{baseline}" in row])
    return rows


def seed_groups(params: EvaluateConfig) -> dict[str, list[str]]:
    """{first entry: entries} for the `train.models` entries that resolve to the same
    architecture, model config and loop settings except `seed` (seed replicates of one model,
    e.g. `odmt_s1: {arch: odmt, seed: 1}`), in train.models order; groups of two or more only."""
    from mmrec.train.entries import resolve_entry

    keyed: dict[str, list[str]] = {}
    for m in params.train.models:
        e = resolve_entry(params.train, m)
        key = json.dumps([e.arch, e.config, e.common.model_dump(mode="json", exclude={"seed"})],
                         sort_keys=True, default=str)
        keyed.setdefault(key, []).append(m)
    return {g[0]: g for g in keyed.values() if len(g) > 1}


def entry_seed(params: EvaluateConfig, entry: str) -> int:
    """The seed `entry` trained with (its train.common/section `seed`, else the top-level one)."""
    from mmrec.train.entries import resolve_entry

    return resolve_entry(params.train, entry).common.training_seed(params.seed)


def seed_summary(params: EvaluateConfig, data: RunData, metrics: list[str], n_boot: int,
                 margin: float) -> list[dict[str, Any]]:
    """Per seed group with metrics for every member: each metric's mean ± sd over the seeds and
    the per-seed values, and, against the baseline's group (or the baseline alone), the pooled
    paired difference (mmrec.metrics.intervals.paired_difference over the seeds) with its
    verdict; Holm-adjusted over every pooled comparison of the table."""
    groups = seed_groups(params)
    baseline = params.evaluate.baseline
    base_group = next((g for g in groups.values() if baseline in g), [baseline])
    base_runs = [data.ranks[m] for m in base_group if m in data.ranks]
    rows = []
    for name, members in groups.items():
        if any(m not in data.metrics for m in members):
            continue
        row: dict[str, Any] = {"model": name, "entries": members,
                               "seeds": [entry_seed(params, m) for m in members]}
        for metric in metrics:
            values = [float(data.metrics[m].get(f"test_{metric}", math.nan)) for m in members]
            row[metric] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values), "values": values}
        runs = [data.ranks[m] for m in members if m in data.ranks]
        if members != base_group and len(runs) == len(members) and base_runs and len(base_runs) == len(base_group):
            aligned = align_runs([*runs, *base_runs], [*members, *base_group])
            a, b = aligned[:len(members)], aligned[len(members):]
            for metric in metrics:
                row[f"{metric}_vs_{baseline}"] = paired_difference(a, b, metric, n_boot, margin=margin)
        rows.append(row)
    mark_holm([row[f"{m}_vs_{baseline}"] for row in rows for m in metrics if f"{m}_vs_{baseline}" in row])
    return rows


def _diff_cell(d: dict[str, Any] | None) -> tuple[str, bool]:
    """A paired difference as a table cell: `diff [lo, hi] verdict` (+ † when Holm-significant),
    bold where that is a gain; a dash when there is none."""
    if d is None:
        return "–", False
    return (f"{d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] {d['verdict']}"
            + (" †" if d["holm_significant"] else ""), d["holm_significant"] and d["diff"] > 0)


def _seed_rows(rows: list[dict[str, Any]], baseline: str, metrics: list[str]
               ) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and cells of the seeds table: mean ± sd (per-seed values), pooled Δ vs baseline."""
    header = ["model (entries)", "seeds"] + [f"{_short('test_' + m)} mean ± sd (per seed)" for m in metrics] + \
        [f"pooled Δ{_short('test_' + m)} vs {baseline} [95% CI]" for m in metrics]
    body = []
    for row in rows:
        cells = [(f"{row['model']} ({', '.join(row['entries'])})", False),
                 (", ".join(map(str, row["seeds"])), False)]
        cells += [(f"{row[m]['mean']:.4f} ± {row[m]['sd']:.4f} ("
                   + ", ".join(f"{v:.4f}" for v in row[m]["values"]) + ")", False) for m in metrics]
        cells += [_diff_cell(row.get(f"{m}_vs_{baseline}")) for m in metrics]
        body.append(cells)
    return header, body


def _interval_rows(rows: list[dict[str, Any]], baseline: str, metrics: list[str]
                   ) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and cells of the intervals table: value [95% CI], difference vs baseline [CI]."""
    header = ["model"] + [f"{_short('test_' + m)} [95% CI]" for m in metrics] + \
        [f"Δ{_short('test_' + m)} vs {baseline} [95% CI]" for m in metrics]
    body = []
    for row in rows:
        cells = [(row["model"], False)]
        cells += [(f"{row[m]['mean']:.4f} [{row[m]['lo']:.4f}, {row[m]['hi']:.4f}]", False) for m in metrics]
        for m in metrics:
            d = row.get(f"{m}_vs_{baseline}")
            if d is None:
                cells.append(("baseline" if row["model"] == baseline else "–", False))
            else:
                cells.append(_diff_cell(d))
        body.append(cells)
    return header, body


def _short(col: str) -> str:
    """`test_recall@10` -> `R@10`, for narrow table headers."""
    name, k = col.split("_", 1)[1].split("@")
    return {"recall": "R", "ndcg": "N", "mrr": "MRR"}.get(name, name) + f"@{k}"


def _fmt_table(table: pl.DataFrame, baseline: str | None = None) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and cells (text, is_best) of a comparison table; best per column is the maximum.
    With `baseline`, the table holds percent changes over that model's row."""
    percent = baseline is not None
    cols = [c for c in table.columns if c != "model"]
    best = {c: table[c].drop_nans().drop_nulls().max() for c in cols}
    body = []
    for row in table.iter_rows(named=True):
        cells = [(row["model"], False)]
        for c in cols:
            v = row[c]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append(("–", False))
            elif percent:
                cells.append(("baseline" if row["model"] == baseline else f"{0.0 if abs(v) < 0.05 else v:+.1f}%", False))
            else:
                cells.append((f"{v:.4f}", best[c] is not None and v == best[c]))
        body.append(cells)
    return ["model"] + [_short(c) for c in cols], body


def _md_table(header: list[str], body: list[list[tuple[str, bool]]], numeric: bool = True) -> str:
    align = "---:" if numeric else "---"
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [align] * (len(header) - 1)) + "|"]
    for row in body:
        lines.append("| " + " | ".join(f"**{t}**" if b else t for t, b in row) + " |")
    return "\n".join(lines)


def _html_table(header: list[str], body: list[list[tuple[str, bool]]], numeric: bool = True) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{'<b>' if b else ''}{html.escape(t)}{'</b>' if b else ''}</td>"
                                    for t, b in row) + "</tr>" for row in body)
    cls = "" if numeric else ' class="text"'
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def key_params(params: EvaluateConfig) -> dict[str, Any]:
    """The parameters that decide what the numbers mean."""
    d, c, e = params.data, params.train.common, params.evaluate
    out: dict[str, Any] = {
        "seed": params.seed,
        "data": f"{d.name} ({d.source}, split {d.split}, max_history {d.max_history}, "
                f"min_user_interactions {d.min_user_interactions}, require {list(d.require)})",
        "encoders": f"text {params.extract.text.encoder}; image {params.extract.image.encoder}",
        # Only what common writes: unwritten keys leave each model's own default in force.
        "train.common": ", ".join(f"{k} {v}" for k, v in c.model_dump(include=c.model_fields_set).items()),
        "train.like_for_like": str(params.train.like_for_like),
        "evaluate": f"{protocol_label(e)}, ks {list(e.ks)}, pessimistic ties, "
                    f"popularity_groups {e.popularity_groups}",
        "profile": getattr(params, "profile", None) or "none (params.yaml's real-data defaults)",
    }
    for m in params.train.models:
        section = params.train.section(m)
        if section:
            out[f"train.{m}"] = ", ".join(f"{k} {v}" for k, v in section.items())
    return out


# ---------------------------------------------------------------- plots


def _plot_k(data: RunData) -> int:
    ks = sorted({int(c.split("@")[1]) for c in metric_columns(data)})
    return 10 if 10 in ks or not ks else ks[0]


def plot_metrics(data: RunData, table: pl.DataFrame, out: Path) -> Path | None:
    """Grouped bars: every test metric, one bar per model."""
    import matplotlib.pyplot as plt

    cols = [c for c in table.columns if c != "model"]
    if table.height == 0 or not cols:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.8 / table.height
    colors = _model_colors(data)
    for i, row in enumerate(table.iter_rows(named=True)):
        xs = [j + (i - (table.height - 1) / 2) * width for j in range(len(cols))]
        ax.bar(xs, [row[c] for c in cols], width=width, label=row["model"], color=colors[row["model"]])
    # "MRR\n@10": two short lines per tick, so neighbouring labels never run together
    ax.set_xticks(range(len(cols)), [_short(c).replace("@", "\n@") for c in cols], fontsize=8)
    ax.set_ylabel("test metric")
    ax.set_title("Test metrics by model (full ranking)")
    # below the axes: inside, the legend hides the tallest bars
    ax.legend(fontsize=8, ncols=min(4, table.height), loc="upper center", bbox_to_anchor=(0.5, -0.16),
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def plot_popularity(data: RunData, out: Path) -> Path | None:
    """Test Recall@K per popularity group (group 0 = cold items), one line per model."""
    import matplotlib.pyplot as plt

    k = _plot_k(data)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels: list[str] = []
    drawn = False
    colors = _model_colors(data)
    for m in data.reported:
        test = next((d for d in data.metrics[m].get("details", []) if d.get("split") == "test"), None)
        groups = (test or {}).get("by_popularity") or []
        if not groups:
            continue
        labels = [f"{g.get('label', g['group'])}\n({g.get('n_users', '?')} users)" for g in groups]
        ax.plot(range(len(groups)), [g.get(f"recall@{k}", math.nan) for g in groups], marker="o", label=m,
                color=colors[m])
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("target popularity group (cold = never in training; Q1 least popular)")
    ax.set_ylabel(f"test Recall@{k}")
    ax.set_title(f"Recall@{k} by target popularity")
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def _model_colors(data: RunData) -> dict[str, Any]:
    """One colour per model of train.models, the same in every plot."""
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {m: cycle[i % len(cycle)] for i, m in enumerate(data.models)}


def plot_curves(data: RunData, out: Path) -> Path | None:
    """Per epoch: validation Recall@K and modality retention. Colour = model; line style =
    (table, modality) of the retention column."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    k = _plot_k(data)
    logs = {m: log for m, log in data.logs.items() if "epoch" in log.columns}
    if not logs:
        return None
    colors = _model_colors(data)
    # The candidate table ("item") is comparable across models; the other tables (ID,
    # branches) are in the retention table of the report and in train_log.tsv.
    kinds = sorted({c[len("retention_"):] for log in logs.values() for c in log.columns
                    if c.startswith("retention_item_")})
    styles = {kind: ["-", "--", ":", "-."][i % 4] for i, kind in enumerate(kinds)}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 3.4))
    for m, log in logs.items():
        col = f"valid_recall@{k}"
        if col in log.columns:
            ax1.plot(log["epoch"], log[col], marker=".", color=colors[m], label=m)
        for kind in kinds:
            if f"retention_{kind}" in log.columns:
                ax2.plot(log["epoch"], log[f"retention_{kind}"], linestyle=styles[kind], color=colors[m])
    ax1.set(title=f"Validation Recall@{k} per epoch", xlabel="epoch", ylabel=f"valid Recall@{k}")
    ax2.set(title="Modality retention of the item table per epoch (colour = model)", xlabel="epoch",
            ylabel="corr(learned, frozen) sim.")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=7, loc="best")    # rising curves: "best" finds the empty corner
    if kinds:
        ax2.legend([Line2D([], [], color="0.3", linestyle=styles[kd]) for kd in kinds],
                   [kd.replace("_", " / ", 1) for kd in kinds], fontsize=7, title="table / modality",
                   title_fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return _save(fig, out)


def plot_losses(data: RunData, out: Path) -> Path | None:
    """Loss components per epoch, one panel per model."""
    import matplotlib.pyplot as plt

    logs = {m: log for m, log in data.logs.items()
            if "epoch" in log.columns and any(c == "loss" or c.startswith("loss_") for c in log.columns)}
    if not logs:
        return None
    n = len(logs)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    comps = {m: [c for c in log.columns if c == "loss" or c.startswith("loss_")] for m, log in logs.items()}
    # Each panel's legend sits under it (inside, it covered the curves of the many-component
    # KDSR/ODMT panels): reserve two columns of entries' worth of height per row.
    legend_rows = math.ceil(max(len(c) for c in comps.values()) / 2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, (2.3 + 0.16 * legend_rows) * nrows + 0.4),
                             squeeze=False)
    for ax, (m, log) in zip(axes.flat, logs.items()):
        for c in comps[m]:
            # The total in black so components keep the colour cycle.
            style = {"color": "black", "linewidth": 2} if c == "loss" else {"linewidth": 1}
            ax.plot(log["epoch"], log[c], marker=".", label=c, **style)
        ax.set(title=m, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False,
                  handlelength=1.5, columnspacing=0.8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Training loss components per epoch")
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from mmrec.io import atomic_path

    for ax in fig.axes:
        if ax.get_xlabel() == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with atomic_path(out) as tmp:
        # A fixed Software tag and no date keep the PNG bytes reproducible.
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": "mmrec"})
    plt.close(fig)
    return out


# ---------------------------------------------------------------- documents


def _group_metric(group: dict[str, Any], key: str) -> str:
    """A breakdown cell: "–" for a group without users (a metric of nobody is not 0.0000)."""
    value = group.get(key)
    if group.get("n_users") == 0 or value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}"


def _breakdown_rows(data: RunData, key: str, k: int) -> tuple[list[str], list[list[tuple[str, bool]]]] | None:
    """Test Recall@K per group of a breakdown (`by_popularity` / `by_history_length`)."""
    labels: list[str] = []
    body = []
    for m in data.reported:
        test = next((d for d in data.metrics[m].get("details", []) if d.get("split") == "test"), None)
        groups = (test or {}).get(key) or []
        if not groups:
            continue
        labels = labels or [f"{g.get('label', g['group'])} (n={g.get('n_users', '?')})" for g in groups]
        body.append([(m, False)] + [(_group_metric(g, f"recall@{k}"), False) for g in groups])
    if not body:
        return None
    return ["model"] + labels, body


class _Doc:
    """Builds the Markdown and the HTML side by side; `row()` lays HTML blocks out next to each
    other (Markdown stays linear)."""

    def __init__(self, plots: dict[str, Path | None]) -> None:
        self.md: list[str] = []
        self.html: list[str] = []
        self.plots = plots
        self._row: list[str] | None = None

    def _emit(self, block: str) -> None:
        (self._row if self._row is not None else self.html).append(block)

    def heading(self, text: str, level: int = 2) -> None:
        self.md.extend(["", "#" * level + " " + text, ""])
        self._emit(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.md.extend([text, ""])
        self._emit(f"<p>{html.escape(text)}</p>")

    def table(self, header, rows, numeric: bool = True, title: str | None = None) -> None:
        if title:
            self.md.extend([f"**{title}**", ""])
        self.md.extend([_md_table(header, rows, numeric), ""])
        cap = f"<h3>{html.escape(title)}</h3>" if title else ""
        self._emit(f"<div class='block'>{cap}{_html_table(header, rows, numeric)}</div>")

    def image(self, key: str, caption: str, wide: bool = False) -> None:
        p = self.plots.get(key)
        if p is None:
            return
        self.md.extend([f"![{caption}]({p.name})", ""])
        raw = p.read_bytes()
        b64 = base64.b64encode(raw).decode()
        # Never upscale a plot beyond its natural width (PNG IHDR: width at bytes 16..20).
        natural = int.from_bytes(raw[16:20], "big")
        self._emit(f"<figure class='{'wide' if wide else 'half'}'><img alt='{html.escape(caption)}' "
                   f"style='max-width:{natural}px' src=\"data:image/png;base64,{b64}\">"
                   f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def begin_row(self) -> None:
        self._row = []

    def end_row(self) -> None:
        row, self._row = self._row or [], None
        if row:
            self.html.append("<div class='row'>" + "".join(row) + "</div>")


_CSS = ("body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1340px;"
        "margin:14px auto;padding:0 14px;color:#222;font-size:14px}"
        "h1{font-size:24px;margin:4px 0 6px}h2{font-size:18px;margin:16px 0 6px;border-bottom:1px solid #ddd}"
        "h3{font-size:14px;margin:2px 0 4px}p{margin:4px 0}"
        "table{border-collapse:collapse;margin:4px 0 8px;font-size:13px}th,td{border:1px solid #ccc;padding:1px 6px;"
        "text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}"
        "table.text td,table.text th{text-align:left}.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}"
        "figure{margin:4px 0 8px}figure.half{flex:1 1 600px;max-width:660px}figure.wide{width:100%}"
        "img{width:100%;height:auto}figcaption{color:#555;font-size:12px}")


def retention_at_best(data: RunData, select: str) -> tuple[list[str], list[list[tuple[str, bool]]]] | None:
    """Retention of every (table, modality) at each model's best validation epoch (`select`,
    e.g. `valid_recall@10`; the last epoch when the log lacks it)."""
    cols: list[str] = []
    for log in data.logs.values():
        cols += [c for c in log.columns if c.startswith("retention_") and c not in cols]
    if not cols:
        return None
    body = []
    for m in data.models:
        log = data.logs.get(m)
        if log is None or log.height == 0:
            continue
        row = log.row(log.height - 1, named=True)
        if select in log.columns and log[select].drop_nans().drop_nulls().len():
            row = log.filter(pl.col(select) == log[select].drop_nans().max()).row(0, named=True)
        cells = [(m, False), (str(row["epoch"]), False)]
        for c in cols:
            v = row.get(c)
            cells.append(("–" if v is None or math.isnan(v) else f"{v:.3f}", False))
        body.append(cells)
    # retention_<table>_<modality>: the modality is the last part (tables may hold "_": text_table)
    header = ["model", "epoch"] + ["/".join(c[len("retention_"):].rsplit("_", 1)) for c in cols]
    return header, body


# What each learned table of `SeqRecModel.retention_tables` is, for the retention columns.
RETENTION_TABLES = {
    "item": "the candidate vectors the model ranks with (late fusion and ODMT: its branches' "
            "vectors side by side)",
    "id": "the ID embedding table",
    "text": "the text branch's item vectors (late fusion, ODMT) or the transformed text features "
            "(early fusion)",
    "image": "the image branch's item vectors (late fusion, ODMT) or the transformed image features "
             "(early fusion)",
    "text_table": "KDSR's trainable text table (initialised from the teacher's denoised features)",
    "image_table": "KDSR's trainable image table (initialised from the teacher's denoised features)",
}


def retention_legend(columns: list[str]) -> str:
    """One sentence naming every learned table among the retention `columns` (`table/modality`)."""
    tables = list(dict.fromkeys(c.split("/", 1)[0] for c in columns))
    parts = [f"{t} = {RETENTION_TABLES.get(t, 'a table the model reports (see its retention_tables)')}"
             for t in tables]
    return "Tables: " + "; ".join(parts) + "."


def render(params: EvaluateConfig, data: RunData, plots: dict[str, Path | None],
           comparisons: list[dict[str, Any]], seeds: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    """The Markdown and the self-contained HTML documents."""
    table = comparison_table(data)
    baseline = params.evaluate.baseline
    rel = relative_improvement(table, baseline)
    k = _plot_k(data)
    title = f"mmrec report: {params.data.name}"
    d = _Doc(plots)
    d.heading(title, level=1)
    d.para(f"Models reported: {', '.join(data.reported) or 'none'}."
           + (f" Missing (no metrics.json yet: not trained or not evaluated): {', '.join(data.missing)}."
              if data.missing else " None missing."))
    for problem in data.problems:
        d.para(f"Note: {problem}")

    d.heading("Test metrics")
    if table.height:
        users = data.metrics[data.reported[0]].get("test_users")
        repeats = data.metrics[data.reported[0]].get("test_repeat_targets")
        protocols = sorted({str(m.get("protocol", "unlabelled (older metrics.json)")) for m in data.metrics.values()})
        d.para(f"Protocol: {'; '.join(protocols)}."
               + (" Models were evaluated under DIFFERENT protocols: do not compare them." if len(protocols) > 1 else ""))
        d.para("Best per column in bold. R = Recall (= HR, one target per user), N = NDCG, MRR = mean "
               "reciprocal rank, at cutoff @K; test computed once at the checkpoint selected on validation. "
               f"Test users: {users}; targets repeating a history item: {repeats}.")
        d.begin_row()
        d.table(*_fmt_table(table), title="Test metrics")
        if rel is not None and rel.height > 1:
            d.table(*_fmt_table(rel, baseline), title=f"Relative improvement over {baseline}")
        d.end_row()
        if rel is None:
            d.para(f"No relative improvement: the baseline {baseline} (evaluate.baseline) has no metrics.")
        if comparisons:
            n_family = sum(f"{m}_vs_{baseline}" in row for row in comparisons for m in CI_METRICS)
            margin = params.evaluate.equivalence_margin
            d.para(f"Intervals: 95% percentile bootstrap over test users ({params.evaluate.bootstrap} "
                   f"resamples); Δ is the paired difference with {baseline} on the same users. Verdict: "
                   "better / worse where its interval excludes zero; equivalent where it lies inside "
                   f"±{margin:g} (evaluate.equivalence_margin); inconclusive otherwise, which is not "
                   "evidence of no difference.")
            d.table(*_interval_rows(comparisons, baseline, CI_METRICS), title="Intervals")
            d.para(f"† significant after Holm's adjustment for the {n_family} paired comparisons of this "
                   "table (family-wise error 5%); bold where that is a gain. A better/worse verdict "
                   "without † may be one of the chance findings that many comparisons make.")
    else:
        d.para("No model has metrics yet: run `dvc repro` (or `mmrec run evaluate <model>`).")
    if seeds:
        d.heading("Seeds")
        d.para("Entries that differ only by their training `seed` are one model trained several times. "
               "Mean ± sd over the seeds, then each seed's value in train.models order. The pooled Δ "
               f"pairs each user's mean over a model's seeds with the same user's mean over the seeds of "
               f"{baseline}'s group: the users are resampled ({params.evaluate.bootstrap} resamples), the "
               "trained runs held fixed, so read it beside the sd. † Holm over the pooled comparisons of "
               "this table.")
        d.table(*_seed_rows(seeds, baseline, CI_METRICS), title="Seeds")

    pop = _breakdown_rows(data, "by_popularity", k)
    hist = _breakdown_rows(data, "by_history_length", k)
    if pop or hist:
        d.heading(f"Test Recall@{k} by target popularity and by history length")
        d.para("Popularity group cold = targets never seen in training; Q1..Qn split the warm items into "
               "equal-count groups by training popularity, Q1 the least popular (ODMT, Figure 4).")
        d.begin_row()
        if pop:
            d.table(*pop, title="By target popularity group (n = test users)")
        if hist:
            d.table(*hist, title="By history length (n = test users)")
        d.end_row()
    d.begin_row()
    d.image("metrics", "Test metrics by model")
    d.image("popularity", f"Test Recall@{k} by target popularity group")
    d.end_row()

    if plots.get("curves") or plots.get("losses"):
        d.heading("Training")
        ret = retention_at_best(data, f"valid_{params.train.common.select_metric}")
        if ret:
            d.para("Modality retention = Pearson correlation between item-item cosine similarities of a "
                   "learned table and of the frozen modality features, on a fixed sample of pairs; "
                   "at the best validation epoch. A column `table/modality` compares that learned "
                   "table with the frozen features of that modality; – = the model has no such table.")
            d.para(retention_legend(ret[0][2:]))
            d.table(*ret)
        d.image("curves", f"Validation Recall@{k} and modality retention per epoch", wide=True)
        d.image("losses", "Loss components per epoch", wide=True)

    d.heading("Dataset and parameters")
    d.begin_row()
    if data.dataset_stats:
        d.table(["statistic", "value"],
                [[(str(key), False), (_fmt_value(v), False)] for key, v in data.dataset_stats.items()],
                title="Dataset statistics")
    else:
        d.para("No dataset statistics available.")
    d.table(["key", "value"], [[(key, False), (str(v), False)] for key, v in key_params(params).items()],
            numeric=False, title="Parameters")
    d.end_row()

    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
           + "\n".join(d.html) + "</body></html>\n")
    return "\n".join(d.md).strip() + "\n", doc


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def run(params: EvaluateConfig, root: Path = Path(".")) -> dict[str, Any]:
    """Write report.md, report.html and the PNG plots under `report/`; return a summary."""
    import matplotlib

    matplotlib.use("Agg")
    from mmrec.io import atomic_path

    t0 = time.perf_counter()
    data = collect(params, root)
    out_dir = paths.report_dir(params, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = comparison_table(data)
    plots = {
        "metrics": plot_metrics(data, table, out_dir / PLOTS["metrics"]),
        "popularity": plot_popularity(data, out_dir / PLOTS["popularity"]),
        "curves": plot_curves(data, out_dir / PLOTS["curves"]),
        "losses": plot_losses(data, out_dir / PLOTS["losses"]),
    }
    # Plots that cannot be drawn this time must not survive from an earlier run.
    for key, p in plots.items():
        if p is None and (out_dir / PLOTS[key]).exists():
            (out_dir / PLOTS[key]).unlink()
    # Bootstrapped once: the same rows feed the report's table and comparison.json.
    comparisons = paired_comparisons(data, params.evaluate.baseline, CI_METRICS, params.evaluate.bootstrap,
                                     params.evaluate.equivalence_margin)
    seeds = seed_summary(params, data, CI_METRICS, params.evaluate.bootstrap, params.evaluate.equivalence_margin)
    md, doc = render(params, data, plots, comparisons, seeds)
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(md)
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text(doc)
    comparison = {"protocol": protocol_label(params.evaluate), "baseline": params.evaluate.baseline,
                  "bootstrap": params.evaluate.bootstrap, "split": "test",
                  "equivalence_margin": params.evaluate.equivalence_margin,
                  "multiplicity": "holm over every paired comparison of the table", "models": comparisons}
    if seeds:
        comparison["seed_groups"] = seeds
    with atomic_path(out_dir / COMPARISON_FILE) as tmp:
        tmp.write_text(json.dumps(comparison, indent=1, sort_keys=True) + "\n")
    return {"path": str(out_dir), "reported": data.reported, "missing": data.missing,
            "plots": [p.name for p in plots.values() if p is not None],
            "problems": data.problems, "seconds": round(time.perf_counter() - t0, 2)}
