import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import train_synth as ts

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["inbatch"])
def test_two_process_gloo_run_trains_and_writes_once(tmp_path, loss):
    ts.write_dataset(tmp_path, n_users=40)
    p = ts.params(models=("sasrec",), epochs=2, loss=loss).model_dump(mode="json")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(port), str(REPO / "stages/train.py"), "sasrec"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    # only rank 0 prints the summary and writes
    assert res.stdout.count("train sasrec (sasrec)") == 1
    mdir = tmp_path / "data/tiny/models/sasrec"
    assert sorted(f.name for f in mdir.iterdir()) == ["model.pt", "train_log.tsv"]
    rows = (mdir / "train_log.tsv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 epochs, written once per epoch
    ckpt = torch.load(mdir / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # unwrapped weights
