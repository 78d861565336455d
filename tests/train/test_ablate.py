"""The ablation grid: every cell over every seed, a table, a plot, reuse of finished runs."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import numpy as np
import torch

from bitfold.train import ablate as ablate_module
from bitfold.train.ablate import ablate
from bitfold.train.layers import binary_layers
from bitfold.train.trainer import TrainConfig, load_run


def test_ablate_grid_table_plot_and_reuse(tmp_path, monkeypatch):
    base = TrainConfig(model="mlp-digits", dataset="digits", epochs=1, batch_size=256)
    result = ablate(base, tmp_path, seeds=2, params=["dense", "svd"], alphas=["analytic", "learned"],
                    progress=False)
    cells = {(c["param"], c["alpha"]): c for c in result["cells"]}
    assert set(cells) == {(p, a) for p in ("dense", "svd") for a in ("analytic", "learned")}
    for (p, a), cell in cells.items():
        accs = [json.loads((tmp_path / "runs" / f"{p}-{a}-s{s}" / "metrics.json").read_text())
                ["test_accuracy"] for s in (0, 1)]
        assert cell["accuracies"] == accs
        assert abs(cell["mean"] - sum(accs) / 2) < 1e-12
    table = (tmp_path / "ablation.md").read_text()
    assert "| svd | " in table and "+-" in table
    image = mpimg.imread(tmp_path / "ablation.png")
    assert image.shape[0] > 100 and image.shape[1] > 100
    # A second call reuses the finished runs instead of training again.
    run = tmp_path / "runs" / "dense-analytic-s0"
    files = ("checkpoint.pt", "metrics.json", "machine.json", "config.json")
    stamps = {f: (run / f).stat().st_mtime_ns for f in files}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained (resumed) again")

    monkeypatch.setattr(ablate_module, "train", no_training)
    again = ablate(base, tmp_path, seeds=2, params=["dense", "svd"], alphas=["analytic", "learned"],
                   progress=False)
    assert again["cells"] == result["cells"]
    assert {f: (run / f).stat().st_mtime_ns for f in files} == stamps  # not even resumed
    machine = json.loads((tmp_path / "runs" / "svd-learned-s1" / "machine.json").read_text())
    assert cells["svd", "learned"]["machines"] == [machine["machine"]]
    assert f"Trained on: {machine['machine']}." in table


def test_ablate_tells_whether_each_cell_had_settled(tmp_path):
    base = TrainConfig(model="mlp-digits", dataset="digits", epochs=3, batch_size=256)
    result = ablate(base, tmp_path, seeds=2, params=["svd"], alphas=["learned"], progress=False,
                    figures=False)
    (cell,) = result["cells"]
    histories = [json.loads((tmp_path / "runs" / f"svd-learned-s{s}" / "metrics.json").read_text())
                 ["history"] for s in (0, 1)]
    tests = [r["test_accuracy"] for h in histories for r in h]
    trains = [h[-1]["train_accuracy"] for h in histories]
    assert cell["tail_epochs"] == 3 and len(tests) == 6
    assert cell["tail_test_range"] == [min(tests), max(tests)]
    assert cell["final_train_range"] == [min(trains), max(trains)]
    row = (f"| svd/learned | {100 * min(tests):.2f}-{100 * max(tests):.2f} "
           f"| {100 * min(trains):.2f}-{100 * max(trains):.2f} |")
    assert row in (tmp_path / "ablation.md").read_text().splitlines()


def test_ablate_summarizes_each_cells_weights_and_scales(tmp_path):
    base = TrainConfig(model="mlp-digits", dataset="digits", epochs=1, batch_size=256)
    result = ablate(base, tmp_path, seeds=1, params=["dense", "holistic-tucker"],
                    alphas=["analytic", "learned"], progress=False)
    dist = result["distributions"]
    assert set(dist) == {f"{p}/{a}" for p in ("dense", "holistic-tucker")
                         for a in ("analytic", "learned")}
    model, _, _ = load_run(tmp_path / "runs" / "holistic-tucker-learned-s0")
    with torch.no_grad():
        layers = [m for _, m in binary_layers(model)]
        w = torch.cat([m.real_weight().flatten() for m in layers])
        alphas = torch.cat([m.binarizer.alpha.flatten() for m in layers])
    cell = dist["holistic-tucker/learned"]
    assert cell["run"] == "holistic-tucker-learned-s0" and cell["weights"] == w.numel()
    assert np.isclose(cell["in_ste_window"], float((w.abs() <= 1).float().mean()))
    assert np.isclose(cell["alpha_mean"], float(alphas.mean()), rtol=1e-5)
    assert np.isclose(cell["alpha_negative"], float((alphas < 0).float().mean()))
    table = (tmp_path / "ablation.md").read_text()
    assert "| holistic-tucker/learned | " in table and "STE window" in table
    for name in ("ablation-weights.png", "ablation-scales.png"):
        image = mpimg.imread(tmp_path / name)
        assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0
