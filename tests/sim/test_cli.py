"""``bitfold simulate``: digits test frames through a small design; report and error lines."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import make_build, need, small_mlp

CLI = [sys.executable, "-m", "bitfold", "simulate"]


def test_simulate_verb_writes_the_report(tmp_path) -> None:
    need("icarus")
    build, folding = make_build(tmp_path / "b", small_mlp(), {"fc0": (8, 32), "fc1": (2, 8)})
    (build / "compile.json").write_text(json.dumps({"schema": 1, "dataset": "digits",
                                                    "data_dir": None}))
    out = subprocess.run([*CLI, str(build), "--frames", "12"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads((build / "sim" / "report.json").read_text())
    for key in ("frames", "mismatches", "cycles_per_frame", "analytic_cycles_per_frame",
                "latency_cycles", "simulator", "wall_s"):
        assert key in report
    assert report["frames"] == 12 and report["mismatches"] == 0
    assert report["simulator"] == "icarus"
    assert report["analytic_cycles_per_frame"] == folding.cycles_per_frame
    assert out.stdout.startswith(f"{build}/sim/report.json: 12 digits test frames")
    # the RTL's own classes against the labels: equal to the golden model's accuracy here,
    # since every class matched
    from bitfold.compiler.serialize import load_graph
    from bitfold.sim.frames import expected_outputs
    from bitfold.sim.runner import dataset_frames

    frames, labels, _ = dataset_frames(build, 12)
    classes, _ = expected_outputs(load_graph(build), frames)
    assert report["rtl_accuracy"] == float((classes == labels).mean())
    assert f"RTL accuracy {report['rtl_accuracy']:.4f}" in out.stdout


def test_simulate_verb_refuses_in_one_line(tmp_path) -> None:
    out = subprocess.run([*CLI, str(tmp_path), "--frames", "0"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == "bitfold simulate: error: --frames must be at least 1, not 0\n"
    out = subprocess.run([*CLI, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith(f"bitfold simulate: error: {tmp_path}: no compile.json names "
                                 "the data set; pass --dataset")
    out = subprocess.run([*CLI, str(tmp_path), "--dataset", "digits"], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert out.stderr.startswith(f"bitfold simulate: error: {tmp_path}/rtl: no manifest.json; "
                                 f"run `bitfold generate {tmp_path} --target-fps F` first")
    (tmp_path / "rtl").mkdir()
    (tmp_path / "rtl" / "manifest.json").write_text('{"schema": 1}')
    out = subprocess.run([*CLI, str(tmp_path), "--dataset", "digits"], capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert out.stderr == (f"bitfold simulate: error: {tmp_path}/rtl/manifest.json: manifest schema "
                          f"1, this bitfold reads 3 (from an older bitfold); rerun `bitfold "
                          f"generate {tmp_path}`\n")
