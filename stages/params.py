"""DVC stage `params`: validate params.yaml and write the values every other stage uses.

`python stages/params.py` writes data/<name>/params.yaml (profiles applied, each train entry
resolved; see mmrec.config.resolved_params). Every other stage tracks its keys there, so DVC
runs this first on any path into the pipeline (`dvc repro <stage>`, `dvc exp run -S ...`): a
misspelt key or a bad value stops the run before anything else starts.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mmrec.entry import stage_main  # noqa: E402


def main() -> None:
    from mmrec.config import load_params, run

    s = run(load_params(), Path("."))
    print(f"params: params.yaml valid; profiles {s['profile'] or 'none'}; {len(s['models'])} models -> {s['path']}")


if __name__ == "__main__":
    stage_main(main, torch=False)
