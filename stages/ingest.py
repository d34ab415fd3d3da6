"""DVC stage `ingest`: raw dataset -> data/<name>/ingest/{items,interactions,splits}.parquet + report.json."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mmrec.entry import stage_main  # noqa: E402


def main() -> None:
    # Imported here, after stage_main has sized the thread pools (polars reads its size at import).
    from mmrec.config import load_params
    from mmrec.data.stage import run, summary_line

    print(summary_line(run(load_params())))


if __name__ == "__main__":
    stage_main(main, torch=False)  # ingest never uses torch: do not import it
