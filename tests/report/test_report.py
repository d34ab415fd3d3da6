import base64
import json
import re

import pytest

from evaluate_fakes import tiny_params
from fake_run import write_fake_run
from mmrec.report.stage import PLOTS, collect, comparison_table, relative_improvement, run

MODELS = ("sasrec", "kdsr", "odmt", "gru4rec")


@pytest.fixture
def fake(tmp_path):
    params = tiny_params(models=MODELS)
    write_fake_run(params, tmp_path, ["sasrec", "kdsr", "odmt"], n_users=120, n_items=200, epochs=4)
    return params, tmp_path


def test_report_on_fake_run(fake):
    params, root = fake
    summary = run(params, root)
    out = root / "data" / "tiny" / "report"
    assert summary["reported"] == ["sasrec", "kdsr", "odmt"] and summary["missing"] == ["gru4rec"]
    assert sorted(summary["plots"]) == sorted(PLOTS.values())
    for name in PLOTS.values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "gru4rec" in md.split("## Test metrics")[0]          # named as missing
    m = {name: json.loads((root / f"data/tiny/results/{name}/metrics.json").read_text())
         for name in ("sasrec", "kdsr", "odmt")}
    # the best test recall@10 is bold, the others are not
    best = max(m, key=lambda k: m[k]["test_recall@10"])
    first_table = md.split("**Test metrics**")[1].split("**Relative improvement")[0]
    lines = [line for line in first_table.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].split("|")]
    rows = {line.split("|")[1].strip(): line for line in lines[1:]}
    col = header.index("R@10")
    for name in m:
        cell = rows[name].split("|")[col].strip()
        assert (cell == f"**{m[name]['test_recall@10']:.4f}**") == (name == best)
    # relative improvement over sasrec
    rel = 100 * (m["kdsr"]["test_ndcg@10"] / m["sasrec"]["test_ndcg@10"] - 1)
    assert f"{rel:+.1f}%" in md
    html = (out / "report.html").read_text()
    imgs = re.findall(r'src="([^"]+)"', html)
    assert len(imgs) == 4 and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert base64.b64decode(imgs[0].split(",", 1)[1])[:4] == b"\x89PNG"
    assert "users" in html and "Parameters" in html and "gru4rec" in html


def test_relative_improvement_values(fake):
    params, root = fake
    table = comparison_table(collect(params, root))
    rel = relative_improvement(table, "sasrec")
    base = table.filter(table["model"] == "sasrec").row(0, named=True)
    odmt = table.filter(table["model"] == "odmt").row(0, named=True)
    got = rel.filter(rel["model"] == "odmt").row(0, named=True)
    assert got["test_mrr@5"] == pytest.approx(100 * (odmt["test_mrr@5"] / base["test_mrr@5"] - 1))
    assert relative_improvement(table.filter(table["model"] != "sasrec"), "sasrec") is None


def test_the_relative_table_follows_evaluate_baseline(tmp_path):
    """One baseline setting: the relative table and the intervals both compare with it."""
    params = tiny_params(models=MODELS, baseline="kdsr")
    write_fake_run(params, tmp_path, ["sasrec", "kdsr", "odmt"], n_users=80, n_items=100, epochs=2)
    run(params, tmp_path)
    md = (tmp_path / "data/tiny/report/report.md").read_text()
    assert "**Relative improvement over kdsr**" in md and "over sasrec" not in md
    rel = md.split("**Relative improvement over kdsr**")[1].split("\n\n")[1]
    kdsr_row = next(line for line in rel.splitlines() if line.startswith("| kdsr "))
    assert "baseline" in kdsr_row
    assert "vs kdsr [95% CI]" in md


def test_report_without_models_and_with_a_broken_file(tmp_path):
    params = tiny_params(models=MODELS)
    write_fake_run(params, tmp_path, ["kdsr"], n_users=50, n_items=60, epochs=2)
    bad = tmp_path / "data/tiny/results/odmt/metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    summary = run(params, tmp_path)
    assert summary["reported"] == ["kdsr"]
    assert any("odmt/metrics.json" in p for p in summary["problems"])
    md = (tmp_path / "data/tiny/report/report.md").read_text()
    assert "baseline sasrec (evaluate.baseline) has no metrics" in md
    # nothing at all: the report still renders and says so; stale plots are removed
    for name in ("kdsr",):
        (tmp_path / f"data/tiny/results/{name}/metrics.json").unlink()
    (tmp_path / "data/tiny/models/kdsr/train_log.tsv").unlink()
    summary = run(params, tmp_path)
    assert summary["reported"] == [] and summary["plots"] == []
    assert not (tmp_path / "data/tiny/report/metrics_by_model.png").exists()
    assert "No model has metrics yet" in (tmp_path / "data/tiny/report/report.md").read_text()


def test_report_gives_intervals_and_paired_comparisons(fake):
    params, root = fake
    run(params, root)
    out = root / "data" / "tiny" / "report"
    doc = json.loads((out / "comparison.json").read_text())
    assert doc["baseline"] == "sasrec" and "history not masked" in doc["protocol"]
    rows = {r["model"]: r for r in doc["models"]}
    assert set(rows) == {"sasrec", "kdsr", "odmt"}
    assert "recall@10_vs_sasrec" not in rows["sasrec"]
    for model in ("kdsr", "odmt"):
        d = rows[model]["recall@10_vs_sasrec"]
        assert d["lo"] <= d["diff"] <= d["hi"]
        assert d["diff"] == pytest.approx(rows[model]["recall@10"]["mean"] - rows["sasrec"]["recall@10"]["mean"])
    # one Holm family: the 2 models x 2 metrics of the table; every comparison has a verdict
    diffs = [rows[m][f"{k}_vs_sasrec"] for m in ("kdsr", "odmt") for k in ("recall@10", "ndcg@10")]
    assert all(d["verdict"] in ("better", "worse", "equivalent", "inconclusive") for d in diffs)
    assert all(d["p"] <= d["p_holm"] <= 1 for d in diffs)
    assert doc["equivalence_margin"] == params.evaluate.equivalence_margin
    md = (out / "report.md").read_text()
    assert "Protocol: full ranking over all items, history not masked" in md
    assert "vs sasrec [95% CI]" in md
    assert "† significant after Holm's adjustment for the 4 paired comparisons" in md
    for d in diffs:
        cell = f"{d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] {d['verdict']}"
        assert (cell + " †" in md) == d["holm_significant"] and cell in md


def test_empty_buckets_print_a_dash_and_retention_columns_are_explained(fake):
    import polars as pl

    params, root = fake
    # KDSR's modality tables: the table name itself holds an underscore
    lpath = root / "data/tiny/models/kdsr/train_log.tsv"
    log = pl.read_csv(lpath, separator="\t")
    log.with_columns(retention_text_table_text=pl.lit(0.5)).write_csv(lpath, separator="\t")
    run(params, root)
    md = (root / "data/tiny/report/report.md").read_text()
    hist = md.split("**By history length (n = test users)**")[1].split("\n\n")[1]
    lines = [line for line in hist.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].split("|")[1:-1]]
    # the fake histories hold 3..14 items: bucket 1-2 has no user, every model shows "–" there
    empty = header.index("1-2 (n=0)")
    for line in lines[2:]:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[empty] == "–"
        assert all(re.fullmatch(r"\d\.\d{4}", c) for i, c in enumerate(cells) if i not in (0, empty))
    assert "text_table/text" in md and "table/text" not in md.replace("text_table/text", "")
    legend = next(line for line in md.splitlines() if line.startswith("Tables: "))
    for table in ("item", "text_table"):
        assert f"{table} = " in legend
    assert "KDSR's trainable text table" in legend


def test_seed_replicates_get_mean_sd_and_a_pooled_comparison(tmp_path):
    from mmrec.report.stage import seed_groups

    from mmrec.config import parse_params

    raw = tiny_params(models=("sasrec",)).model_dump(mode="json")
    raw["train"].update({"models": ["sasrec", "odmt", "odmt_s1", "odmt_s2", "odmt_wide"],
                         "odmt_s1": {"arch": "odmt", "seed": 1}, "odmt_s2": {"arch": "odmt", "seed": 2},
                         "odmt_wide": {"arch": "odmt", "hidden": 128}})
    params = parse_params(raw)
    assert seed_groups(params) == {"odmt": ["odmt", "odmt_s1", "odmt_s2"]}   # odmt_wide is another model
    write_fake_run(params, tmp_path, n_users=120, n_items=200, epochs=3)
    run(params, tmp_path)
    out = tmp_path / "data" / "tiny" / "report"
    comp = json.loads((out / "comparison.json").read_text())
    (group,) = comp["seed_groups"]
    assert group["entries"] == ["odmt", "odmt_s1", "odmt_s2"] and group["seeds"] == [params.seed, 1, 2]
    values = [json.loads((tmp_path / f"data/tiny/results/{m}/metrics.json").read_text())["test_recall@10"]
              for m in group["entries"]]
    assert group["recall@10"]["values"] == values
    assert group["recall@10"]["mean"] == pytest.approx(sum(values) / 3)
    d = group["recall@10_vs_sasrec"]
    assert d["runs_a"] == 3 and d["runs_b"] == 1
    assert d["diff"] == pytest.approx(group["recall@10"]["mean"] - comp["models"][0]["recall@10"]["mean"])
    assert "## Seeds" in (out / "report.md").read_text()
