"""DVC stage `ingest`: raw dataset -> data/<name>/ingest/{items,interactions,splits}.parquet + report.json."""

from mmrec.cli import stage_main
from mmrec.config import load_params
from mmrec.data.stage import run, summary_line


def main() -> None:
    print(summary_line(run(load_params())))


if __name__ == "__main__":
    stage_main(main)
