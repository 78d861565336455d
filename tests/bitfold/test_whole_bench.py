"""``bench.json``, ``bench.md`` and ``bench.png`` (and ``sweep.json`` with ``sweep.png``) are
replaced together: an interrupted or failed bench leaves the previous set, whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import bitfold.bench
import bitfold.sweep
from bitfold.artifacts import read_json, replaced_files
from tests.boards.helpers import tiny_build

CPU = {"rows": [], "best": {}, "threads": 2, "frames": 8, "dataset": "digits"}


def _snapshot(build: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(build.iterdir()) if p.is_file()}


@pytest.fixture
def benched(tmp_path, monkeypatch):
    """A tiny build benched once (the CPU baselines stubbed: no run to measure here)."""
    monkeypatch.setattr(bitfold.bench, "cpu_baselines", lambda *a, **k: CPU)
    build = tiny_build(tmp_path / "build")
    first = bitfold.bench.bench(build, clock_mhz=50.0)
    bitfold.sweep.sweep(build, device="ice40", clock_mhz=50.0)
    assert read_json(build / "bench.json")["hardware"]["fps"] == first["hardware"]["fps"]
    return build


class Stop(KeyboardInterrupt):
    pass


def _interrupted_plot(doc, path) -> None:
    Path(path).write_bytes(b"half a png")
    raise Stop


def test_an_interrupted_bench_leaves_the_previous_three_files(benched, monkeypatch) -> None:
    before = _snapshot(benched)
    monkeypatch.setattr(bitfold.bench, "plot_bench", _interrupted_plot)
    with pytest.raises(Stop):
        bitfold.bench.bench(benched, clock_mhz=25.0)  # another clock: every file would differ
    assert _snapshot(benched) == before  # bench.json and bench.md not replaced without the png
    assert read_json(benched / "bench.json")["hardware"]["clock_mhz"] == 50.0


def test_an_interrupted_sweep_leaves_the_previous_pair(benched, monkeypatch) -> None:
    before = _snapshot(benched)
    monkeypatch.setattr(bitfold.sweep, "plot_sweep", _interrupted_plot)
    with pytest.raises(Stop):
        bitfold.sweep.sweep(benched, device="ice40", clock_mhz=25.0)
    assert _snapshot(benched) == before
    assert read_json(benched / "sweep.json")["clock_mhz"] == 50.0


def test_replaced_files_renames_all_or_none(tmp_path) -> None:
    (tmp_path / "a").write_text("old a")
    (tmp_path / "b").write_text("old b")
    with pytest.raises(ValueError, match="^cut$"):
        with replaced_files(tmp_path, "a", "b") as tmp:
            tmp["a"].write_text("new a")
            raise ValueError("cut")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary file left
    assert (tmp_path / "a").read_text() == "old a"
    with replaced_files(tmp_path, "a", "b") as tmp:
        tmp["a"].write_text("new a")
        tmp["b"].write_text("new b")
    assert [(tmp_path / n).read_text() for n in "ab"] == ["new a", "new b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_bench_takes_simulated_cycles_only_for_the_rtl_they_were_measured_on(tmp_path) -> None:
    from bitfold.artifacts import sha256_file, write_json
    from bitfold.bench import hardware_figures
    from bitfold.cli import main

    build = tiny_build(tmp_path / "build")
    assert main(["generate", str(build), "--folding", str(build / "folding.json")]) == 0
    analytic = read_json(build / "folding.json")["totals"]["cycles_per_frame"]
    report = {"schema": 1, "simulator": "icarus", "cycles_per_frame": analytic + 0.5,
              "analytic_cycles_per_frame": analytic, "mismatches": 0, "latency_cycles": 40,
              "rtl_manifest_sha256": sha256_file(build / "rtl" / "manifest.json")}
    write_json(build / "sim" / "report.json", report)
    hw = hardware_figures(build)
    assert (hw["cycles_per_frame"], hw["cycles_source"]) == (analytic + 0.5, "measured (icarus)")
    write_json(build / "sim" / "report.json", {**report, "rtl_manifest_sha256": "0" * 64})
    hw = hardware_figures(build)  # simulated on another rtl/: the analytic figure, said so
    assert (hw["cycles_per_frame"], hw["cycles_source"]) == \
        (analytic, "analytic (no bit-exact simulation report)")
