"""The ablation grid: every cell over every seed, a table, a plot, reuse of finished runs."""

from __future__ import annotations

import json

import matplotlib.image as mpimg

from bitfold.train.ablate import ablate
from bitfold.train.trainer import TrainConfig


def test_ablate_grid_table_plot_and_reuse(tmp_path):
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
    stamp = (tmp_path / "runs" / "dense-analytic-s0" / "checkpoint.pt").stat().st_mtime_ns
    again = ablate(base, tmp_path, seeds=2, params=["dense", "svd"], alphas=["analytic", "learned"],
                   progress=False)
    assert again["cells"] == result["cells"]
    assert (tmp_path / "runs" / "dense-analytic-s0" / "checkpoint.pt").stat().st_mtime_ns == stamp
