"""``bitfold run`` end to end (without the bitstream), stage reuse, ``bitfold bench`` and the report."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

import bitfold.bench
from bitfold.artifacts import read_json
from bitfold.cli import main
from bitfold.compiler.folding import evaluate_folding, fold_for_budget, trade_off
from bitfold.compiler.serialize import load_graph
from bitfold.sim.runner import available

pytestmark = pytest.mark.skipif(not available("icarus"), reason="Icarus Verilog not installed")

RUN = ["run", "--epochs", "1", "--frames", "6", "--no-bitstream", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def quick_bench():
    """Two batch sizes and short timings: these tests check what bench measures, not speed."""
    original = bitfold.bench.bench
    bitfold.bench.bench = partial(original, batches=(1, 4), min_s=0.01, repeats=1)
    yield
    bitfold.bench.bench = original


# a run folder as a user may name it: every stage takes it as it is, nothing in it runs (an
# --out with quotes once broke Icarus with a traceback, and GNU make refuses a space)
HOSTILE = "it's a \"demo\" $(touch PWNED) `touch PWNED2`"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run") / HOSTILE
    assert main([*RUN, "--out", str(out)]) == 0
    return out, str(out)


def test_a_run_folder_with_quotes_spaces_and_substitutions_runs_every_stage(first_run) -> None:
    out, _ = first_run
    assert sorted(read_json(out / "run.json")["stages"]) == \
        ["bench", "compile", "generate", "golden", "simulate", "train"]
    assert read_json(out / "build" / "sim" / "report.json")["mismatches"] == 0
    assert not list(out.parent.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


def _stages(out: Path) -> dict[str, bool]:
    return {k: v["reused"] for k, v in read_json(out / "run.json")["stages"].items()}


def test_run_writes_a_report_that_says_what_the_artifacts_say(first_run) -> None:
    out, _ = first_run
    sim = read_json(out / "build" / "sim" / "report.json")
    golden = read_json(out / "build" / "golden.json")
    assert sim["frames"] == 6 and sim["mismatches"] == 0
    assert sim["cycles_per_frame"] == sim["analytic_cycles_per_frame"]
    report = (out / "report.md").read_text()
    assert "| bit-exact | yes: RTL == golden on 6 of 6 frames (icarus" in report
    assert f"golden {100 * golden['accuracy']:.2f}%" in report
    assert f"RTL {100 * sim['rtl_accuracy']:.2f}% (6 RTL frames)" in report
    bench = read_json(out / "build" / "bench.json")
    fps = f"{bench['hardware']['fps']:,.0f}"
    assert f"| FPGA accelerator (at the stated 12 MHz (--clock-mhz)) | 1 (streaming) | {fps} |" \
        in report
    for png in ("training.png", "layers.png", "throughput.png", "foldings.png"):
        assert f"]({png})" in report
        image = matplotlib.image.imread(out / png)
        assert image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 0.01


def test_bench_measures_every_engine_against_the_hardware(first_run) -> None:
    out, _ = first_run
    bench = read_json(out / "build" / "bench.json")
    hw, cpu = bench["hardware"], bench["cpu"]
    folding = read_json(out / "build" / "folding.json")
    assert hw["clock_mhz"] == folding["clock_mhz"] == 12.0  # icebreaker's clock, no bitstream
    assert hw["cycles_source"] == "measured (icarus)"
    assert hw["fps"] == pytest.approx(12e6 / hw["cycles_per_frame"])
    assert {(r["name"], r["batch"]) for r in cpu["rows"]} == {
        (n, b) for n in ("torch-float", "torch-binary", "golden-packed") for b in (1, 4)}
    assert all(r["fps"] > 0 for r in cpu["rows"])
    # the binary torch model materialized for speed still classifies like the golden model
    assert cpu["torch_golden_agreement"] == 1.0
    assert cpu["torch_accuracy"] == cpu["golden_accuracy"]
    for name, best in cpu["best"].items():
        assert best["fps"] == max(r["fps"] for r in cpu["rows"] if r["name"] == name)
        assert best["hardware_ratio"] == pytest.approx(hw["fps"] / best["fps"])


def test_a_second_run_reuses_every_stage_and_a_changed_input_reruns_what_depends_on_it(
        first_run, tmp_path, capsys) -> None:
    src, _ = first_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)  # a moved run folder is still reused: keys name it OUT
    assert main([*RUN, "--out", str(out)]) == 0
    assert all(_stages(out).values())
    printed = capsys.readouterr().out
    assert "reused (inputs unchanged)" in printed
    # the report keeps the time of the run that made the artifacts, not this re-run's
    made, rerun = read_json(src / "run.json"), read_json(out / "run.json")
    assert rerun["wall_s"] == made["wall_s"] > 1 and rerun["rerun_s"] < made["wall_s"]
    report = (out / "report.md").read_text()
    assert (f"; whole run {made['wall_s']:.0f} s (load average {made['load_average']}) when its "
            f"stages ran; this re-run reused every stage ({rerun['rerun_s']:.1f} s).") in report
    assert f"{made['wall_s']:.0f} s when its stages ran (this re-run reused all " in printed
    before = read_json(out / "build" / "sim" / "report.json")

    (out / "build" / "golden.json").write_text("{}")  # an output changed by hand: rerun
    assert main([*RUN, "--out", str(out)]) == 0
    stages = _stages(out)
    assert not stages["golden"] and stages["train"] and stages["simulate"]
    assert read_json(out / "build" / "golden.json")["frames"] == 360

    assert main([*RUN, "--out", str(out), "--frames", "8"]) == 0  # a changed option
    stages = _stages(out)
    assert not stages["simulate"] and not stages["bench"]
    assert stages["train"] and stages["compile"] and stages["generate"]
    after = read_json(out / "build" / "sim" / "report.json")
    assert (before["frames"], after["frames"]) == (6, 8)


def test_a_failing_stage_stops_the_run_with_one_line_and_no_report(tmp_path, capsys) -> None:
    out = tmp_path / "bad"
    code = main(["run", "--out", str(out), "--dataset", "mnist", "--data-dir",
                 str(tmp_path / "nowhere"), "--epochs", "1", "--no-bitstream", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("bitfold run: error: stage train failed (exit 2)")
    assert "bitfold train --model mlp-digits --dataset mnist" in err[-1]
    assert err[0].startswith("bitfold train: error:")
    assert not (out / "report.md").exists() and not (out / "run.json").exists()


def test_bad_run_options_are_one_line_errors(tmp_path, capsys) -> None:
    assert main(["run", "--out", str(tmp_path / "x"), "--board", "nosuchboard"]) == 2
    assert "nosuchboard" in capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path / "x"), "--frames", "0"]) == 2
    assert "--frames must be at least 1" in capsys.readouterr().err


def test_trade_off_is_every_cheapest_folding_and_the_sweep_marks_its_pareto_front(
        first_run) -> None:
    out, _ = first_run
    build = out / "build"
    graph = load_graph(build)
    foldings = trade_off(graph, 12.0, "ice40")
    cycles = [f.cycles_per_frame for f in foldings]
    assert cycles == sorted(cycles) and len(set(cycles)) == len(cycles)
    for f in foldings:  # each is a legal folding, the fastest within its own cost
        again = evaluate_folding(graph, {c.name: (c.pe, c.simd) for c in f.layers}, 12.0, "ice40")
        assert again.total("luts") == f.total("luts")
        best = fold_for_budget(graph, f.total("luts"), f.total("brams"), 12.0, "ice40")
        assert best.cycles_per_frame <= f.cycles_per_frame
    sweep = read_json(build / "sweep.json")
    rows = sweep["designs"]
    assert len(rows) == len(foldings)
    for d in rows:
        dominated = any(o["fps"] >= d["fps"] and o["luts"] <= d["luts"] and o["brams"] <= d["brams"]
                        and (o["fps"], o["luts"], o["brams"]) != (d["fps"], d["luts"], d["brams"])
                        for o in rows)
        assert d["pareto"] == (not dominated)
    own = read_json(build / "folding.json")
    assert sweep["current"]["folding"] == [[x["pe"], x["simd"]] for x in own["layers"]]


def test_bench_without_a_folding_says_what_to_run(tmp_path, capsys) -> None:
    assert main(["bench", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "folding.json" in err and "bitfold generate" in err


def test_float_twin_keeps_the_trained_model_working(first_run) -> None:
    import torch

    from bitfold.bench import float_twin
    from bitfold.train.layers import binary_layers
    from bitfold.train.trainer import load_run

    out, _ = first_run
    model, config, data = load_run(out / "train")
    x = data.x_test[:16].float() * data.input_scale
    with torch.no_grad():
        before = model(x)
        twin = float_twin(model, config, data)
        after = model(x)
        real = twin(x)
    assert torch.equal(before, after)  # the original's parametrizations are untouched
    for (_, a), (_, b) in zip(binary_layers(model), binary_layers(twin), strict=True):
        assert torch.equal(a.real_weight().detach(), b.weight)
    assert not np.allclose(real.numpy(), before.numpy())  # real weights, not the binary ones


def test_the_report_names_the_quantizer_and_its_structure() -> None:
    from bitfold.report import _quantizer

    assert _quantizer({"quantizer": "binary"}) == ""
    assert _quantizer({"quantizer": "sparse", "sparsity": 0.75, "sparse_group": 4}) == \
        " / sparse 0.75 (1:4)"
    assert _quantizer({"quantizer": "sparse", "sparsity": 0.5, "sparse_group": None,
                       "sparse_first": True}) == " / sparse 0.5, first layer too"
    assert _quantizer({"quantizer": "composite", "bases": 2, "low_rank": 64}) == \
        " / composite K=2, low-rank 64"
    assert _quantizer({"quantizer": "domain"}) == " / domain {a, b}"
