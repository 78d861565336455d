"""``bitfold run``: every stage on one network, each reused when its inputs are unchanged.

A run folder ``OUT`` holds ``train/`` (the run), ``build/`` (the build) and the
report. Each stage is the ``bitfold`` verb a user would type (printed, so it
can be rerun alone), run in this process by the callable the caller hands in for
that verb (``bitfold.cli.stage_verbs``; this module does not import the CLI). A
stage's command line is its identity: it is what is printed, what its key
hashes, and what its verb is given.
After a stage succeeds its *key* is recorded in ``OUT/stages.json``: a hash of
its command line, of the files it reads and of bitfold's version, together
with a hash of each file it wrote. On the next run a stage whose key matches
and whose outputs are still those files is reused instead of run; changing an
option, or an input artifact (say, by retraining by hand), reruns that stage
and what depends on it.

The board build (nextpnr, single-threaded) runs in a child process while the
RTL simulation (Icarus, single-threaded) runs here: on two cores they overlap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitfold import __version__
from bitfold.artifacts import ArtifactError, read_json, write_json
from bitfold.boards.flow import LUT_SHARE  # the default folding's share of the board's LUTs
from bitfold.options import train_argv

__all__ = ["LUT_SHARE", "RunError", "Stage", "VerbRunner", "run_pipeline"]

STAMPS = "stages.json"
STAMPS_SCHEMA = 1
RUN_SCHEMA = 1


VerbRunner = Callable[[Sequence[str]], int]
"""Runs one verb on its arguments (the command line after ``bitfold VERB``); returns its exit status."""


class RunError(ValueError):
    """A stage failed; the message says which and how to rerun it alone."""


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(paths: Sequence[Path]) -> list[Path]:
    """Files under ``paths`` (a folder stands for every file in it), sorted."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file())
        elif p.is_file():
            out.append(p)
    return out


@dataclass
class Stage:
    """One pipeline stage: the commands that make it and the files it reads and writes."""

    name: str
    commands: list[list[str]]
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    ok_codes: tuple[int, ...] = (0,)

    root: Path = Path(".")

    def _rel(self, text: str) -> str:
        """``text`` with the run folder's path as ``OUT``: a moved run folder is still reused."""
        root = str(self.root)
        return "OUT" + text[len(root):] if text == root or text.startswith(root + os.sep) else text

    def key(self) -> str:
        doc = {"version": __version__,
               "commands": [[self._rel(a) for a in c] for c in self.commands],
               "inputs": {self._rel(str(p)): _sha(p) for p in _files(self.inputs)}}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def output_hashes(self) -> dict[str, str] | None:
        files = _files(self.outputs)
        if any(not p.exists() for p in self.outputs):
            return None
        return {self._rel(str(p)): _sha(p) for p in files}

    def shell(self) -> str:
        return " && ".join("bitfold " + " ".join(shlex.quote(a) for a in c)
                           for c in self.commands)


class _Stamps:
    """``OUT/stages.json``: the key and output hashes of every stage that succeeded."""

    def __init__(self, out: Path, force: bool) -> None:
        self.path = out / STAMPS
        self.doc: dict[str, Any] = {"schema": STAMPS_SCHEMA, "stages": {}}
        if self.path.is_file() and not force:
            try:
                self.doc = read_json(self.path, schema=STAMPS_SCHEMA)
            except ArtifactError:
                pass  # an old or broken record: every stage runs again

    def fresh(self, stage: Stage, key: str) -> bool:
        rec = self.doc["stages"].get(stage.name)
        return bool(rec) and rec["key"] == key and rec["outputs"] == stage.output_hashes()

    def record(self, stage: Stage, key: str, seconds: float) -> None:
        self.doc["stages"][stage.name] = {"key": key, "outputs": stage.output_hashes(),
                                          "seconds": round(seconds, 2)}
        write_json(self.path, self.doc)

    def seconds(self, stage: Stage) -> float:
        """How long the stage took when it last ran."""
        return self.doc["stages"][stage.name].get("seconds", 0.0)

    def forget(self, stage: Stage) -> None:
        if self.doc["stages"].pop(stage.name, None) is not None:
            write_json(self.path, self.doc)


@dataclass
class _Pipeline:
    out: Path
    stamps: _Stamps
    verbs: Mapping[str, VerbRunner]
    say: Callable[[str], None]
    total: int
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    step: int = 0

    def header(self, stage: Stage, reused: bool) -> None:
        self.step += 1
        tag = "reused (inputs unchanged)" if reused else stage.shell()
        self.say(f"[{self.step}/{self.total}] {stage.name}: {tag}")

    def reuse(self, stage: Stage) -> tuple[bool, str]:
        key = stage.key()
        fresh = self.stamps.fresh(stage, key)
        if fresh:
            self.header(stage, True)
            self.timings[stage.name] = {"seconds": self.stamps.seconds(stage), "reused": True,
                                        "command": stage.shell(), "key": key}
        return fresh, key

    def run(self, stage: Stage) -> int:
        fresh, key = self.reuse(stage)
        if fresh:
            return 0
        self.header(stage, False)
        self.stamps.forget(stage)
        t0 = time.perf_counter()
        code = 0
        for verb, *arguments in stage.commands:
            sys.stdout.flush()
            code = self.verbs[verb](arguments)
            if code not in stage.ok_codes:
                raise RunError(f"stage {stage.name} failed (exit {code}); fix what it says and "
                               f"run `bitfold run` again (finished stages are reused), or run "
                               f"the stage alone: {stage.shell()}")
        seconds = time.perf_counter() - t0
        self.stamps.record(stage, key, seconds)
        self.timings[stage.name] = {"seconds": round(seconds, 2), "reused": False,
                                    "command": stage.shell(), "key": key}
        return code

    def start_child(self, stage: Stage, log: Path) -> tuple[subprocess.Popen, str, float] | None:
        """Start a one-command stage in a child process (``None`` when it is reused)."""
        fresh, key = self.reuse(stage)
        if fresh:
            return None
        self.header(stage, False)
        self.say(f"      in the background; log: {log}")
        self.stamps.forget(stage)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            proc = subprocess.Popen([sys.executable, "-m", "bitfold", *stage.commands[0]],
                                    stdout=f, stderr=subprocess.STDOUT)
        return proc, key, time.perf_counter()

    def wait_child(self, stage: Stage, child, log: Path) -> int:
        if child is None:
            return 0
        proc, key, t0 = child
        code = proc.wait()
        seconds = time.perf_counter() - t0
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        for line in lines[-2:]:
            self.say(f"      {line}")
        if code not in stage.ok_codes:
            raise RunError(f"stage {stage.name} failed (exit {code}); see {log}; run it alone: "
                           f"{stage.shell()}")
        self.stamps.record(stage, key, seconds)
        self.timings[stage.name] = {"seconds": round(seconds, 2), "reused": False,
                                    "command": stage.shell(), "exit": code, "key": key}
        return code


def _previous_run(out: Path) -> dict[str, Any] | None:
    """The run.json an earlier run left in ``out`` (None when there is none, or it is broken)."""
    try:
        return read_json(out / "run.json", schema=RUN_SCHEMA) if (out / "run.json").is_file() \
            else None
    except ArtifactError:
        return None


def _made_by(previous: dict[str, Any] | None, timings: Mapping[str, Any]) -> dict[str, Any]:
    """The whole-run time and load of the run that made every stage a re-run reused.

    That run's ``run.json`` is the previous one when it had the same stages with the same
    keys; otherwise the time is unknown (``wall_s`` None), never this re-run's seconds.
    """
    stages = (previous or {}).get("stages", {})
    same = set(stages) == set(timings) and all(
        stages[name].get("key") == t["key"] for name, t in timings.items())
    if not same:
        return {"wall_s": None, "load_average": None}
    return {"wall_s": previous["wall_s"], "load_average": previous.get("load_average")}


def _train_argv(args) -> list[str]:
    """The ``bitfold train`` command for ``run``'s training options (:func:`bitfold.options.train_argv`)."""
    return train_argv(args)


def _import_argv(args, build: str) -> list[str]:
    """The ``bitfold import`` command of ``bitfold run --import MODEL.onnx``."""
    argv = ["import", args.import_model, "--out", build, "--dataset", args.dataset,
            "--input-scale", args.input_scale,
            "--input-bits", str(8 if args.input_bits is None else args.input_bits)]
    return argv + (["--data-dir", str(Path(args.data_dir).resolve())] if args.data_dir else [])


def _data_files(args) -> list[Path]:
    return [Path(args.data_dir)] if args.data_dir else []


def run_pipeline(args, verbs: Mapping[str, VerbRunner],
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or reuse) every stage for ``args`` (the ``bitfold run`` options); return run.json.

    ``verbs`` maps each stage's verb (``train``, ``compile``, ...) to what runs it
    in this process; the board build alone runs in a child ``python -m bitfold``.
    """
    from bitfold.boards.targets import get_board

    if getattr(args, "quantizer", "binary") == "float":
        raise ValueError("--quantizer float trains the float baseline, which has no binary form "
                         "to compile or build; train it with bitfold train --quantizer float, or "
                         "run without --quantizer float")
    imported = getattr(args, "import_model", None)
    out = Path(args.out or (f"runs/import-{Path(imported).stem}-{args.dataset}" if imported
                            else f"runs/run-{args.model}-{args.dataset}"))
    board = get_board(args.board)
    if args.target_fps is not None and args.max_luts is not None:
        raise ValueError("give --target-fps or --max-luts, not both")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be at least 1, not {args.frames}")
    out.mkdir(parents=True, exist_ok=True)
    stages = _stages(args, out, board, imported)
    stamps = _Stamps(out, args.force)
    previous = _previous_run(out)
    pipe = _Pipeline(out, stamps, verbs, say, total=len(stages) + 1)
    t0 = time.perf_counter()
    _run_stages(pipe, stages, out, imported)
    pipe.step += 1
    say(f"[{pipe.step}/{pipe.total}] report")
    from bitfold.report import summary_lines, write_report

    doc = {"schema": RUN_SCHEMA, "out": str(out), "board": board.name,
           "bitstream": not args.no_bitstream, "stages": pipe.timings,
           "wall_s": round(time.perf_counter() - t0, 1), "version": __version__,
           "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    if all(t["reused"] for t in pipe.timings.values()):
        doc.update(_made_by(previous, pipe.timings), rerun_s=doc["wall_s"])
    write_json(out / "run.json", doc)
    report = write_report(out)
    say("")
    for line in summary_lines(out):
        say(line)
    say(f"report: {report}")
    return doc


def _stages(args, out: Path, board, imported: str | None) -> dict[str, Stage]:
    """The stages of ``bitfold run`` in ``out``: each one's commands, inputs and outputs."""
    run_dir, build = out / "train", out / "build"
    r, b = str(run_dir), str(build)
    # generate --board: the board's family and clock, its block RAMs, and 75% of its LUTs
    # (boards.flow.default_budget) unless --target-fps or --max-luts says otherwise
    fold = [["generate", b, "--board", board.name,
             *(["--target-fps", repr(args.target_fps)] if args.target_fps is not None else []),
             *(["--max-luts", str(args.max_luts)] if args.max_luts is not None else [])]]
    graph = [build / "graph.json", build / "tensors.npz"]
    board_dir = build / "boards" / board.name
    sim = ["simulate", b, "--simulator", args.simulator]
    if args.frames is not None:
        sim += ["--frames", str(args.frames)]
    bench = ["bench", b, "--quiet", "--sweep"]
    bench += (["--board", board.name] if not args.no_bitstream
              else ["--clock-mhz", repr(board.clock_mhz)])
    stages = {
        "train": Stage("train", [_train_argv(args) + ["--out", r, "--force"]], _data_files(args),
                       [run_dir / "checkpoint.pt", run_dir / "metrics.json"]),
        "compile": Stage("compile", [["compile", r, "--out", b]], [run_dir / "checkpoint.pt"],
                         [*graph, build / "compile.json"]),
        "golden": Stage("golden", [["golden", b]], [*graph, run_dir / "checkpoint.pt"],
                        [build / "golden.json"]),
        "generate": Stage("generate", fold, graph, [build / "rtl", build / "folding.json"]),
        "bitstream": Stage("bitstream", [["build", b, "--board", board.name, "--quiet"]],
                           [build / "rtl", build / "folding.json"],
                           [board_dir / "report.json", board_dir / f"top.{board.bitstream_ext}"],
                           ok_codes=(0, 3)),
        "simulate": Stage("simulate", [sim], [build / "rtl", *graph],
                          [build / "sim" / "report.json"]),
        "bench": Stage("bench", [bench], [*graph, build / "folding.json",
                                          build / "sim" / "report.json", run_dir / "checkpoint.pt",
                                          *([] if args.no_bitstream else
                                            [board_dir / "report.json"])],
                       [build / "bench.json"]),
    }
    if args.no_bitstream:
        del stages["bitstream"]
    if imported:  # bitfold import (which writes golden.json against qonnx) instead of train..golden
        for name in ("train", "compile", "golden"):
            del stages[name]
        stages = {"import": Stage("import", [_import_argv(args, b)],
                                  [Path(imported), *_data_files(args)],
                                  [*graph, build / "compile.json", build / "golden.json"]),
                  **stages}
    for stage in stages.values():
        stage.root = out
    return stages


def _run_stages(pipe: _Pipeline, stages: Mapping[str, Stage], out: Path,
                imported: str | None) -> None:
    """Every stage in order, the board build in a child process beside the simulation."""
    for name in ("import", "generate") if imported else ("train", "compile", "golden", "generate"):
        pipe.run(stages[name])
    child = None
    log = out / "logs" / "bitstream.log"
    if "bitstream" in stages:
        child = pipe.start_child(stages["bitstream"], log)
    try:
        pipe.run(stages["simulate"])
        if "bitstream" in stages:
            pipe.wait_child(stages["bitstream"], child, log)
    except BaseException:  # a failed or interrupted run stops the board build too (SIGTERM:
        if child is not None and child[0].poll() is None:  # it ends its tools, keeps the old)
            child[0].terminate()
            child[0].wait()
        raise
    pipe.run(stages["bench"])
