"""The ``lrnde`` command line, run in-process on tiny budgets: ``compare`` (spiral and a synthetic MNIST),
its outputs and ``--resume``, ``train``, ``solve``, ``validate``, and the usage errors.
"""

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from idx_files import mnist_files

from lrnde_np import cli
from lrnde_np.experiments import common
from lrnde_np.training import load_checkpoint

SPIRAL_HEADER = [
    "Method",
    "Test Loss",
    "Train Loss",
    "Train Time (s)",
    "Pred Time (s/batch)",
    "Test NFE",
    "NFE ratio",
    "Pred speed-up",
    "Train time ratio",
    "Train NFE/iter",
    "Backward NFE/iter",
]
TINY = ["--task", "spiral", "--hidden", "8", "--no-plot"]
TIMING_FIELDS = {"step_time", "train_time"}


def compare(out, *extra, iters=5, methods="vanilla,local-unbiased", quiet=True):
    argv = ["compare", *TINY, "--iters", str(iters), "--methods", methods, "--out", str(out), *extra]
    return cli.main(argv + (["--quiet"] if quiet else []))


def same_records(a, b):
    assert set(a) == set(b)
    for k in a:
        if k not in TIMING_FIELDS:
            np.testing.assert_array_equal(np.array(a[k], float), np.array(b[k], float), err_msg=k)


def test_compare_spiral_writes_the_table(tmp_path, capsys):
    assert compare(tmp_path) == 0
    out = capsys.readouterr().out
    assert "| Vanilla NODE |" in out and "| Local Unbiased ERNODE |" in out
    with open(tmp_path / "table.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == SPIRAL_HEADER
    assert [r[0] for r in rows[1:]] == ["Vanilla NODE", "Local Unbiased ERNODE"]
    vanilla = dict(zip(rows[0], rows[1], strict=True))
    assert vanilla["NFE ratio"] == "1" and vanilla["Train time ratio"] == "1"
    for row in rows[1:]:
        values = dict(zip(rows[0], row, strict=True))
        for col in SPIRAL_HEADER[1:]:
            assert math.isfinite(float(values[col])) and float(values[col]) > 0, (col, values[col])
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in data["results"]] == ["vanilla", "local-unbiased"]
    assert all(r["status"] == "ok" for r in data["results"])
    assert data["settings"]["iters"] == 5 and data["task"]["hidden"] == 8
    assert data["command"].startswith("lrnde compare ")
    for method in ("vanilla", "local-unbiased"):
        rec = data["records"][method]
        assert rec["iteration"] == [0, 1, 2, 3, 4]
        res = next(r for r in data["results"] if r["method"] == method)
        assert res["train_nfe"] == pytest.approx(np.mean(rec["nfe_train"]))
    assert np.all(np.array(data["records"]["local-unbiased"]["nfe_reg"]) > 0)
    assert np.all(np.array(data["records"]["vanilla"]["nfe_reg"]) == 0)
    md = (tmp_path / "table.md").read_text()
    assert "| " + " | ".join(SPIRAL_HEADER) + " |" in md
    assert md.count("| Vanilla NODE |") == 1 and md.count("| Local Unbiased ERNODE |") == 1
    assert "task: spiral; seed 0; 5 iterations" in md
    assert not (tmp_path / "curves.png").exists()  # --no-plot


class Interrupt(Exception):
    pass


def test_compare_resume_continues_an_interrupted_run(tmp_path, capsys, monkeypatch):
    # the reference: uninterrupted, with the progress display on
    assert compare(tmp_path / "ref", iters=6, methods="local-unbiased", quiet=False) == 0
    err = capsys.readouterr().err
    assert "[local-unbiased] iter 1/6" in err and "[local-unbiased] iter 6/6" in err and "Traceback" not in err
    reference = json.loads((tmp_path / "ref" / "results.json").read_text())

    # the same run stopped after iteration 4 (checkpoints every 2 iterations)
    real_train = common.train
    resumed_from = []

    def interrupted(task, reg, cfg, resume=True, callback=None, stream=None):
        def stop(it, record):
            if it == 4:
                raise Interrupt

        return real_train(task, reg, replace(cfg, checkpoint_every=2), resume=resume, callback=stop)

    def spy(task, reg, cfg, resume=True, callback=None, stream=None):
        result = real_train(task, reg, cfg, resume=resume, callback=callback, stream=stream)
        resumed_from.append(result.resumed_from)
        return result

    run = tmp_path / "run"
    monkeypatch.setattr(common, "train", interrupted)
    with pytest.raises(Interrupt):
        compare(run, iters=6, methods="local-unbiased")
    ck = run / "checkpoints" / "local-unbiased.npz"
    assert load_checkpoint(ck)["iteration"] == 4
    monkeypatch.setattr(common, "train", spy)
    assert compare(run, "--resume", iters=6, methods="local-unbiased") == 0
    assert resumed_from == [4]
    resumed = json.loads((run / "results.json").read_text())
    same_records(resumed["records"]["local-unbiased"], reference["records"]["local-unbiased"])
    assert resumed["results"][0]["test_loss"] == reference["results"][0]["test_loss"]
    assert resumed["results"][0]["test_nfe"] == reference["results"][0]["test_nfe"]

    # a resume with another configuration is refused with a message, no traceback
    with pytest.raises(SystemExit) as exc:
        compare(run, "--resume", "--lr", "0.02", iters=6, methods="local-unbiased")
    assert "different configuration" in str(exc.value.code) and str(ck) in str(exc.value.code)
    # without --resume the old checkpoint is discarded and the run starts over
    resumed_from.clear()
    assert compare(run, "--lr", "0.02", iters=6, methods="local-unbiased") == 0
    assert resumed_from == [0]


def test_compare_mnist_on_synthetic_data(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(3)
    mnist_files(data, rng.integers(0, 256, (50, 6, 6)), rng.integers(0, 10, 50))
    argv = [
        "compare",
        "--task",
        "mnist",
        "--data",
        str(data),
        "--n-train",
        "30",
        "--hidden",
        "4",
        "--batch-size",
        "10",
        "--iters",
        "2",
        "--methods",
        "vanilla,global,local-biased",
        "--out",
        str(tmp_path / "out"),
        "--no-plot",
        "--quiet",
    ]
    assert cli.main(argv) == 0
    with open(tmp_path / "out" / "table.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["Method", "Test Acc %", "Train Acc %"]
    assert [r[0] for r in rows[1:]] == ["Vanilla NODE", "Global ERNODE (2021)", "Local Biased ERNODE"]
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    for r in results:
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["eval_batches"] == 2  # 20 held out, batches of 10
    assert "30 training / 20 held-out images" in (tmp_path / "out" / "table.md").read_text()


def test_compare_mnist_needs_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "--task", "mnist", "--out", str(tmp_path)])
    assert isinstance(exc.value.code, str) and "--data" in exc.value.code  # exit status 1, one line
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "--task", "mnist", "--data", str(missing), "--out", str(tmp_path)])
    assert str(missing) in exc.value.code and "does not exist" in exc.value.code
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_options_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "--methods", "vanilla,fancy", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "unknown method 'fancy'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "--iters", "0", "--out", str(tmp_path)])
    assert "--iters must be positive" in exc.value.code
    with pytest.raises(SystemExit) as exc:
        compare(tmp_path, "--lr", "-1", iters=2, methods="vanilla")
    assert "lr must be a positive number" in exc.value.code
    with pytest.raises(SystemExit) as exc:
        compare(tmp_path, "--batch-size", "5000", iters=2, methods="vanilla")
    assert "batch_size" in exc.value.code


def test_train_command(tmp_path, capsys):
    out = tmp_path / "run.json"
    ck = tmp_path / "ck.npz"
    argv = [
        "train",
        *TINY[:-1],
        "--method",
        "local_biased",
        "--iters",
        "3",
        "--quiet",
        "--checkpoint",
        str(ck),
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("local-biased: test loss ") and "train NFE/iter" in printed
    payload = json.loads(out.read_text())
    assert payload["records"]["iteration"] == [0, 1, 2]
    params = np.load(tmp_path / "run_params.npy")
    np.testing.assert_array_equal(params, load_checkpoint(ck)["params"])
    with pytest.raises(SystemExit) as exc:  # an existing checkpoint is not overwritten silently
        cli.main(argv)
    assert "--resume" in exc.value.code
    assert cli.main(argv + ["--resume"]) == 0
    assert "resumed after 3 iterations" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--resume"])
    assert "--checkpoint" in exc.value.code


def test_solve_command(capsys):
    assert cli.main(["solve", "lotka-volterra", "--points", "5", "--t1", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("lotka-volterra: ")
    assert "status 0" in lines[2] and lines[3].startswith("nfe ")
    table = np.array([[float(v) for v in line.split()] for line in lines[-5:]])
    np.testing.assert_allclose(table[:, 0], np.linspace(0, 2, 5))
    np.testing.assert_allclose(table[0, 1:], [1.0, 1.0])
    # x' = αx − βxy, y' = −γy + δxy conserves V = δx − γ ln x + βy − α ln y (α, β, γ, δ = 1.5, 1, 3, 1)
    x, y = table[:, 1], table[:, 2]
    invariant = x - 3.0 * np.log(x) + y - 1.5 * np.log(y)
    np.testing.assert_allclose(invariant, invariant[0], rtol=1e-5)
    assert cli.main(["solve", "spiral", "--method", "rk4", "--dt", "0.01", "--points", "3"]) == 0
    assert "nfe" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["solve", "spiral", "--method", "euler"])
    assert "--dt" in exc.value.code


def test_validate_lists_scripts(capsys):
    assert cli.main(["validate"]) == 0
    out = capsys.readouterr().out
    assert "mnist_node" in out and "usage: lrnde validate NAME" in out
    assert cli.main(["validate", "no_such_script"]) == 2
    assert "unknown script 'no_such_script'" in capsys.readouterr().err


def test_unknown_command_and_help(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "compare" in err
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in ("compare", "train", "bench", "validate", "solve"):
        assert name in out


def _resolved(argv):
    from lrnde_np.experiments import compare

    return common.resolve(compare.build_parser().parse_args(argv))


def test_gradient_semantics_defaults_and_lambda_scales():
    # spiral and mnist train the local regularizers with the exact gradient and its λ scale by default ...
    args = _resolved([])
    assert args.gradient == "exact" and args.lam == 100.0
    assert common.regularization_for("local-unbiased", args).through_k1
    assert not common.regularization_for("global", args).through_k1
    # ... --gradient paper freezes k1 and restores the paper-scale λ, unless λ is given
    args = _resolved(["--gradient", "paper"])
    assert args.gradient == "paper" and args.lam == 0.01
    assert not common.regularization_for("local-biased", args).through_k1
    assert _resolved(["--gradient", "paper", "--lambda", "3"]).lam == 3.0
    # the old flag is the exact gradient; contradicting it is an error
    assert _resolved(["--through-k1"]).gradient == "exact"
    with pytest.raises(SystemExit, match="contradicts"):
        _resolved(["--through-k1", "--gradient", "paper"])
    # mnist: exact by default with the global λ kept at the paper's 2.5 → 1.0 decay ratio
    args = _resolved(["--task", "mnist", "--data", "DIR"])
    assert args.gradient == "exact" and (args.lam, args.lam_end) == (5e5, 2e5)
    cfg = common.train_config_for("global", args)
    assert cfg.lam == 2.5 and cfg.lam_end == pytest.approx(1.0)
    # tasks calibrated with the paper's gradient keep it
    assert _resolved(["--task", "latent-spiral"]).gradient == "paper"
