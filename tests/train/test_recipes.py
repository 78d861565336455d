"""Training recipes (per-model defaults) and the options they set: per-group learning rates,
warm-up, latent-weight clipping, squared hinge loss, input dropout."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from bitfold.options import param_options, train_argv, train_options
from bitfold.train.config import TrainConfig
from bitfold.train.data import first_train, load_dataset
from bitfold.train.dense_start import dense_phase
from bitfold.train.layers import BinaryLinear
from bitfold.train.optim import (
    LatentPenalty,
    loss_fn,
    make_optimizer,
    param_groups,
    warmup_factor,
)
from bitfold.train.recipes import LEGACY, RECIPE_FIELDS, recipe
from bitfold.train.trainer import load_run, make_model, train


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    train_options(p)
    param_options(p)
    return p.parse_args(list(argv))


def test_the_digits_recipe_is_the_old_defaults_and_every_field_is_set():
    config = TrainConfig().resolved()
    assert {name: getattr(config, name) for name in RECIPE_FIELDS} == LEGACY
    assert (config.lr, config.epochs, config.batch_size) == (1e-2, 20, 64)


def test_a_model_recipe_fills_unset_fields_and_an_explicit_option_wins():
    own = recipe("sfc", "mnist")
    assert own != LEGACY  # sfc on MNIST has its own recipe
    plain = TrainConfig(model="sfc", dataset="mnist").resolved()
    assert {name: getattr(plain, name) for name in RECIPE_FIELDS} == own
    given = TrainConfig(model="sfc", dataset="mnist", lr=0.5, epochs=3, loss="cross-entropy",
                        warmup=0).resolved()
    assert (given.lr, given.epochs, given.loss, given.warmup) == (0.5, 3, "cross-entropy", 0)
    assert given.batch_size == own["batch_size"]
    assert TrainConfig(model="sfc", dataset="npz").resolved().lr == LEGACY["lr"]  # no recipe


def test_the_cli_leaves_recipe_options_unset_and_run_prints_the_resolved_epochs():
    args = _parse("--model", "sfc", "--dataset", "mnist")
    assert all(getattr(args, name) is None for name in RECIPE_FIELDS)
    argv = train_argv(args)
    assert argv[argv.index("--epochs") + 1] == str(recipe("sfc", "mnist")["epochs"])
    assert "--lr" not in argv  # left to the recipe, as train resolves it
    demo = train_argv(_parse())  # the demo's command, as before recipes
    assert dict(zip(demo[1::2], demo[2::2], strict=True)) == {
        "--model": "mlp-digits", "--dataset": "digits", "--param": "holistic-tucker",
        "--alpha": "learned", "--epochs": "20"}
    given = train_argv(_parse("--lr", "0.003"))
    assert given[given.index("--lr") + 1] == "0.003"


def test_an_older_runs_config_reads_back_as_it_was_trained():
    old = TrainConfig().resolved().to_dict()
    for name in ("input_dropout", "loss", "clip", "alpha_lr", "bn_lr", "warmup"):
        del old[name]
    old.update(model="sfc", dataset="mnist")  # trained before sfc had a recipe
    back = TrainConfig.from_dict(old)
    assert (back.loss, back.clip, back.alpha_lr, back.bn_lr, back.warmup,
            back.input_dropout) == ("cross-entropy", 0.0, 1.0, 1.0, 0, 0.0)


def test_invalid_recipe_options_are_refused():
    for bad, match in ((dict(loss="hinge"), "loss must be one of"),
                       (dict(bn_lr=0.0), "bn_lr must be positive"),
                       (dict(input_dropout=1.0), r"input_dropout must be in \[0, 1\)"),
                       (dict(clip=-1.0), "clip must be 0"), (dict(warmup=-1), "warmup must be")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)


def test_parameter_groups_and_their_learning_rates():
    data = load_dataset("digits")
    config = TrainConfig(lr=1e-3, alpha_lr=10.0, bn_lr=3.0).resolved()
    model = make_model(config, data)
    groups = param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert groups["alphas"] and all(names[id(p)].endswith(".alpha") for p in groups["alphas"])
    bn = [p for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d) for p in m.parameters()]
    assert [id(p) for p in groups["bn"]] == [id(p) for p in bn] and len(bn) == 8  # 4 norms
    assert sum(map(len, groups.values())) == len(list(model.parameters()))
    opt = make_optimizer(config, model)
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([1e-3, 1e-2, 3e-3])
    one = make_optimizer(TrainConfig(lr=1e-3).resolved(), model)
    assert len(one.param_groups) == 1  # factors 1: one group, as before recipes


def test_squared_hinge_loss_values():
    y = torch.tensor([0, 1])
    out = torch.tensor([[2.0, -3.0], [0.5, 0.0]])
    # sample 0: margins 1-2 -> 0, 1-3 -> 0; sample 1: 1+0.5 = 1.5 -> 2.25, 1-0 = 1 -> 1
    assert float(loss_fn(out, y, "squared-hinge")) == pytest.approx((2.25 + 1.0) / 4)
    assert float(loss_fn(out, y, "cross-entropy")) == pytest.approx(
        float(torch.nn.functional.cross_entropy(out, y)))


def test_warmup_factor_rises_linearly_then_stays_at_one():
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def _tiny(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(epochs=2, batch_size=128, lr=1e-2), **kw})


def test_warmup_changes_training_and_leaves_the_schedule_as_planned(tmp_path):
    plain = train(_tiny(), tmp_path / "plain", progress=False)
    warm = train(_tiny(warmup=1), tmp_path / "warm", progress=False)
    assert [h["lr"] for h in warm["history"]] == [h["lr"] for h in plain["history"]]
    assert warm["history"][0]["train_loss"] != plain["history"][0]["train_loss"]
    saved = json.loads((tmp_path / "warm" / "config.json").read_text())
    assert saved["warmup"] == 1 and saved["lr"] == 1e-2


def test_clip_bounds_dense_latent_weights(tmp_path):
    def latent_max(run) -> float:
        state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
        return max(float(v.abs().max()) for k, v in state.items()
                   if k.endswith("parametrizations.weight.original"))

    train(_tiny(param="dense", lr=0.05), tmp_path / "free", progress=False)
    train(_tiny(param="dense", lr=0.05, clip=0.125), tmp_path / "clipped", progress=False)
    assert latent_max(tmp_path / "free") > 0.125
    assert latent_max(tmp_path / "clipped") == 0.125  # exact in float32


def test_input_dropout_drops_only_the_first_layers_input():
    data = load_dataset("digits")
    model = make_model(TrainConfig(dropout=0.1, input_dropout=0.3).resolved(), data)
    rates = [m.dropout for m in model.modules() if isinstance(m, BinaryLinear)]
    assert rates[0] == 0.3 and set(rates[1:]) == {0.1}
    with pytest.raises(ValueError, match="--input-dropout applies to the MLPs"):
        make_model(TrainConfig(model="cnn-digits", input_dropout=0.2).resolved(), data)


def test_resume_of_a_plain_recipe_run_is_accepted(tmp_path):
    train(_tiny(epochs=1, lr=None, batch_size=None), tmp_path, progress=False)
    metrics = train(_tiny(epochs=2, lr=None, batch_size=None), tmp_path, resume=True,
                    progress=False)
    assert metrics["epochs"] == 2


def test_latent_penalty_is_the_range_excess_of_each_reconstruction():
    data = load_dataset("digits")
    model = make_model(TrainConfig().resolved(), data)  # holistic Tucker, learned alpha
    penalty = LatentPenalty(model, 2.0)
    layers = [m for m in model.modules() if isinstance(m, BinaryLinear)]
    with torch.no_grad():  # reconstructions well outside [-1, 1]
        for group in model.factor_groups:
            group.core.mul_(40.0)
    x = data.x_train[:8].float() * data.input_scale
    with torch.no_grad():
        model(x)
    assert penalty.take() == 0.0  # no gradients, nothing caught (the evaluation)
    model(x)
    want = sum(torch.relu(m.real_weight().detach().abs() - 1).square().mean() for m in layers)
    got = penalty.take().detach()
    assert float(want) > 0 and float(got) == pytest.approx(2.0 * float(want), rel=1e-6)
    assert penalty.take() == 0.0  # taken once
    penalty.remove()
    model(x)
    assert penalty.take() == 0.0


def test_latent_penalty_pulls_reconstructions_into_the_window(tmp_path):
    def outside(run) -> float:
        model, _, _ = load_run(run)
        w = torch.cat([m.real_weight().detach().flatten() for m in model.modules()
                       if isinstance(m, BinaryLinear)])
        return float((w.abs() > 1).float().mean())

    train(_tiny(lr=0.05), tmp_path / "free", progress=False)
    train(_tiny(lr=0.05, latent_penalty=100.0), tmp_path / "pulled", progress=False)
    assert outside(tmp_path / "free") > 0.05
    assert outside(tmp_path / "pulled") < outside(tmp_path / "free") / 2
    saved = json.loads((tmp_path / "pulled" / "config.json").read_text())
    assert saved["latent_penalty"] == 100.0
    assert "latent_penalty" not in json.loads((tmp_path / "free" / "config.json").read_text())
    train(_tiny(lr=0.05), tmp_path / "free", resume=True, progress=False)  # reads back as is
    with pytest.raises(ValueError, match="latent_penalty must be 0"):
        TrainConfig(latent_penalty=-1.0)


def test_dense_start_is_a_dense_run_then_a_start_from_it(tmp_path):
    def state(run):
        return torch.load(run / "checkpoint.pt", weights_only=True)["model"]

    one = train(_tiny(dense_start=2.0, epochs=1), tmp_path / "one", progress=False)
    phase = json.loads((tmp_path / "one" / "dense" / "config.json").read_text())
    assert (phase["param"], phase["epochs"], phase["lr"]) == ("dense", 2, 1e-2)  # digits' base
    train(TrainConfig(param="dense", epochs=2), tmp_path / "d", progress=False)
    two = train(_tiny(epochs=1, init_from=str(tmp_path / "d")), tmp_path / "two", progress=False)
    assert one["test_accuracy"] == two["test_accuracy"]
    dense = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert one["dense_phase"]["epochs"] == 2 and "dense_phase" not in two
    assert one["total_wall_s"] == pytest.approx(one["dense_phase"]["wall_s"] + one["wall_s"])
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["dense_phase"] == \
        one["dense_phase"]
    assert one["dense_phase"]["test_accuracy"] == dense["test_accuracy"]
    a, b = state(tmp_path / "one"), state(tmp_path / "two")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert state(tmp_path / "one" / "dense").keys() == state(tmp_path / "d").keys()
    saved = json.loads((tmp_path / "one" / "config.json").read_text())
    assert saved["dense_start"] == 2.0 and saved["param"] == "holistic-tucker"
    stamp = (tmp_path / "one" / "dense" / "checkpoint.pt").stat().st_mtime_ns
    more = train(_tiny(dense_start=2.0, epochs=2), tmp_path / "one", resume=True, progress=False)
    assert more["epochs"] == 2  # the factorized run went on; its dense phase was kept
    assert (tmp_path / "one" / "dense" / "checkpoint.pt").stat().st_mtime_ns == stamp
    model, config, _ = load_run(tmp_path / "one")  # compile and golden read it as any run
    assert config.dense_start == 2.0 and config.init_from is None
    with pytest.raises(ValueError, match="--dense-start trains a dense phase"):
        TrainConfig(param="dense", dense_start=3.0)
    assert recipe("sfc", "mnist", "dense")["dense_start"] == 0
    for model in ("tfc", "sfc", "lfc"):
        assert (recipe(model, "mnist")["dense_start"], recipe(model, "mnist")["epochs"]) == (2.0, 20)
    assert recipe("lfc", "fashion-mnist")["dense_start"] == 0  # not measured there
    # sfc's factorized phase takes its own batch and rate; its dense phase keeps the dense recipe's
    sfc = TrainConfig(model="sfc", dataset="mnist").resolved()
    assert (sfc.batch_size, sfc.lr) == (1024, 2e-3)
    dense = dense_phase(sfc)
    assert (dense.batch_size, dense.lr) == (256, 1e-2)
    assert recipe("tfc", "mnist")["batch_size"] == recipe("lfc", "mnist")["batch_size"] == 256
    assert recipe("mlp-digits", "digits")["dense_start"] == 0  # the demo's: the base


def test_a_finished_dense_phase_is_kept_only_for_the_same_options(tmp_path):
    train(_tiny(dense_start=1.0, epochs=1), tmp_path, progress=False)
    phase = tmp_path / "dense" / "checkpoint.pt"
    stamp = phase.stat().st_mtime_ns
    train(_tiny(dense_start=1.0, epochs=1), tmp_path, progress=False)  # the same run again
    assert phase.stat().st_mtime_ns == stamp
    train(_tiny(dense_start=1.0, epochs=1, seed=1), tmp_path, progress=False, force=True)
    assert json.loads((tmp_path / "dense" / "config.json").read_text())["seed"] == 1


def test_train_subset_trains_on_the_first_samples_and_is_saved(tmp_path):
    sub = train(_tiny(epochs=1, train_subset=300), tmp_path / "sub", progress=False)
    whole = train(_tiny(epochs=1), tmp_path / "whole", progress=False)
    saved = json.loads((tmp_path / "sub" / "config.json").read_text())
    assert saved["train_subset"] == 300
    assert "train_subset" not in json.loads((tmp_path / "whole" / "config.json").read_text())
    assert sub["history"][0]["train_loss"] != whole["history"][0]["train_loss"]
    data = load_dataset("digits")
    head = first_train(data, 300)
    assert torch.equal(head.x_train, data.x_train[:300]) and torch.equal(head.x_test, data.x_test)
    with pytest.raises(ValueError, match="--train-subset must be at least 1"):
        TrainConfig(train_subset=0)
    with pytest.raises(ValueError, match=r"--train-subset 5000: digits has only 1437 training "
                                         r"samples; give at most 1437$"):
        train(_tiny(train_subset=5000), tmp_path / "big", progress=False)
    assert not (tmp_path / "big").exists()
