"""DVC stage `ingest`: raw dataset -> data/<name>/ingest/{items,interactions,splits}.parquet + report.json."""

from mmrec.config import load_params
from mmrec.data.stage import run, summary_line

if __name__ == "__main__":
    print(summary_line(run(load_params())))
