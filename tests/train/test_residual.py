"""``resnet8``: its integer residual stream in torch equals the IR's, value for value."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bitfold.compiler.golden import run_reference
from bitfold.compiler.packed import run_packed
from bitfold.compiler.passes import fold
from bitfold.train.layers import parametrize_model
from bitfold.train.models import build_model
from bitfold.train.residual import STREAM_BITS, STREAM_FRAC, ResNet8, lower_resnet

SCALE = 1 / 255


def _model(param: str, seed: int, shape=(1, 12, 12)) -> ResNet8:
    """A parametrized resnet8 with batch-norm statistics from a few batches and random
    thresholds and affines (some negative), so streams saturate and signs flip."""
    torch.manual_seed(seed)
    model = parametrize_model(build_model("resnet8", shape, 5, 0.0), param, "learned")
    with torch.no_grad():
        for bn in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
            bn.weight.uniform_(-3.0, 8.0)
            bn.bias.uniform_(-3.0, 3.0)
        for unit in model.units:
            unit.tau.uniform_(-1.0, 1.0)
        model.train()
        for _ in range(3):
            model(torch.randint(0, 256, (16, *shape)).float() * SCALE)
    return model.eval()


@pytest.mark.parametrize(("param", "seed"), [("dense", 0), ("holistic-tucker", 1), ("svd", 2)])
def test_every_stream_of_torch_equals_the_golden_model(param, seed) -> None:
    model = _model(param, seed)
    graph = fold(lower_resnet(model, 8, SCALE)[0])
    assert graph.types["r6"].bits == STREAM_BITS and graph.types["r6"].signed
    x = torch.randint(0, 256, (40, 1, 12, 12))
    x[:10] = 255 * (x[:10] > 127)  # extremes: saturated streams
    captured: list[torch.Tensor] = []
    hooks = [u.register_forward_hook(lambda m, i, o: captured.append(o)) for u in model.units]
    model.input_scale = SCALE
    with torch.no_grad():
        logits = model(x.float() * SCALE)
    for h in hooks:
        h.remove()
    frames = x.numpy().transpose(0, 2, 3, 1)
    golden = run_reference(graph, frames)
    saturated = 0
    for i, stream in enumerate(captured):
        ints = (stream * 2 ** STREAM_FRAC).numpy().transpose(0, 2, 3, 1)
        assert np.array_equal(ints, golden[f"r{i + 1}"]), f"stream r{i + 1}"
        saturated += int((np.abs(ints) >= 2 ** (STREAM_BITS - 1) - 1).sum())
    assert saturated > 0  # the test reaches the saturation
    assert np.array_equal(logits.argmax(1).numpy(), golden["class"])
    assert np.array_equal(run_packed(graph, frames)["class"], golden["class"])


def test_exact_eval_is_close_to_the_training_forward() -> None:
    """Training rounds the same way in float32: the exact streams differ from it only
    where float rounding lands on a step (a few values in thousands, by one step)."""
    model = _model("dense", 3)
    x = torch.randint(0, 256, (20, 1, 12, 12)).float() * SCALE
    with torch.no_grad():
        float_out = model(x)
        model.input_scale = SCALE
        exact_out = model(x)
    assert torch.allclose(float_out, exact_out, atol=0.5)
    assert (float_out.argmax(1) == exact_out.argmax(1)).float().mean() >= 0.9


def test_hourglass_heatmaps_of_torch_equal_the_golden_model() -> None:
    from bitfold.train.hourglass_hw import HEAT_BITS, HourglassHW, heatmaps_nchw, lower_hourglass

    torch.manual_seed(4)
    model = parametrize_model(HourglassHW((3, 32, 32), 3, width=8, depth=1), "dense", "learned")
    x = torch.randint(0, 256, (8, 3, 32, 32))
    with torch.no_grad():
        model.train()
        model(x.float() * SCALE)
        model.eval()
        model.input_scale = SCALE
        maps = model(x.float() * SCALE)
    graph = fold(lower_hourglass(model, 8, SCALE)[0])
    assert graph.types["heatmaps"].bits == HEAT_BITS and maps.shape == (8, 3, 8, 8)
    kinds = {n.op for n in graph.nodes}
    assert {"Upsample2d", "AvgPool2d", "Add", "Requantize"} <= kinds
    golden = run_reference(graph, x.numpy().transpose(0, 2, 3, 1))["heatmaps"]
    assert torch.equal(heatmaps_nchw(golden).float(), maps)


def test_golden_of_a_pose_build_compares_pckh(tmp_path, capsys) -> None:
    from bitfold.cli import main

    run, build = tmp_path / "run", tmp_path / "build"
    assert main(["train", "--model", "hourglass-hw", "--dataset", "synthetic-pose", "--param",
                 "dense", "--epochs", "1", "--quiet", "--out", str(run)]) == 0
    assert main(["compile", str(run), "--out", str(build)]) == 0
    capsys.readouterr()
    assert main(["golden", str(build)]) == 0
    line = capsys.readouterr().out.strip()
    report = json.loads((build / "golden.json").read_text())
    assert report["pckh"] == report["torch_pckh"] and report["heatmaps_differ"] == 0
    assert line == (f"{build}/golden.json: golden PCKh {report['pckh']:.4f}, torch "
                    f"{report['pckh']:.4f}, heatmaps differ on 0 of 128 synthetic-pose test images")
