"""`layerlab calibrate`: factors fitted from simulated layers, read back by `layerlab estimate --calibration`.

The round trip runs on the selftest's sliced layer: the gem5 TEST DOUBLE's stand-in cycles (a
pipeline self-test, not a simulation), or a real gem5's when ``LAYERLAB_GEM5`` is set. Tables are
checked on hand-made factors; bad input gives one line naming the file (and column), exit 2, and
no YAML.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_orchestrator_local import make_spec, real_gem5_spec

from analytical.calibration import load_calibration
from orchestrator.cli import main

FIT_BOUNDS = (1e-3, 10.0)


@pytest.fixture(scope="module")
def selftest(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("selftest")
    spec = real_gem5_spec(root) or make_spec(root)
    assert main(["run", str(spec), "--quiet"]) == 0
    return spec, next(root.glob("runs/selftest/*/*/*/step1-layer1"))


def calibrate(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(["calibrate", *map(str, argv)])
    except SystemExit as exc:  # argument errors: argparse exits (one line, status 2)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def estimate(capsys, *extra: str) -> pd.DataFrame:
    """The selftest's layer (Llama-3.2-1B, first decode step: 16 + 4 tokens of context) on its machine."""
    capsys.readouterr()
    argv = ["estimate", "--model", "llama-3.2-1b", "--hardware", "gem5-mi300x", "--phase", "decode"]
    assert main([*argv, "--context", "20", "--format", "json", *extra]) == 0
    return pd.DataFrame(json.loads(capsys.readouterr().out)).set_index("op")


def simulated_by_role(sliced: Path) -> pd.Series:
    """Seconds per census role, from the conductor's kernels.parquet (not from reports code)."""
    kernels = pd.read_parquet(sliced / "kernels.parquet")
    clock = json.loads((sliced / "params.json").read_text())["machine"]["gpu"]["sys_clock_hz"]
    work = kernels[~kernels["blit"].astype(bool)]
    return work.groupby("census_module")["gpu_cycles"].sum() / clock


@pytest.mark.parametrize("estimator", ["roofline", "waves"])
def test_round_trip_moves_the_estimate_to_the_simulation(selftest, tmp_path, capsys, estimator) -> None:
    _, sliced = selftest
    target = tmp_path / "calibration.yaml"
    code, out, _ = calibrate(capsys, sliced, "-o", target, "--estimator", estimator, "--json")
    assert code == 0
    summary = json.loads(out)
    double = "TEST DOUBLE" in (sliced / "m5out" / "simout.txt").read_text().splitlines()[0]
    assert summary["selftest"] == double and summary["estimator"] == estimator
    text = target.read_text()
    assert ("PIPELINE SELF-TEST" in text) == double
    body = yaml.safe_load(text)
    assert body["hardware"] == "gem5-mi300x" and body["estimator"] == estimator
    factors = load_calibration(target)  # what estimate reads
    assert set(factors.factors) == set(summary["factors"]) and "gemm" in factors.factors
    assert {i["role"] for i in summary["left_out"]} >= {"attention", "layer"}  # mixed classes, catch-all

    plain = estimate(capsys, "--estimator", estimator)
    tuned = estimate(capsys, "--estimator", estimator, "--calibration", str(target))
    sim = simulated_by_role(sliced)
    fitted = plain[(plain["join"] == "op") & plain["op_class"].isin(list(factors.factors))]
    assert len(fitted) >= 8
    checked = 0
    for op_class, group in fitted.groupby("op_class"):
        before = sum(abs(plain.loc[op, "t_est_s"] - sim[group.loc[op, "role"]]) for op in group.index)
        after = sum(abs(tuned.loc[op, "t_est_s"] - sim[group.loc[op, "role"]]) for op in group.index)
        assert after < before, op_class  # the calibrated estimate moves to the simulated value
        compute, bandwidth = factors.factors[op_class]
        for side, factor in (("compute", compute), ("memory", bandwidth)):
            on_side = [op for op in group.index if tuned.loc[op, "bound"] == side]
            if not on_side or factor in FIT_BOUNDS or (side == "compute" and estimator != "roofline"):
                continue
            # least squares through the origin: Σ ideal·calibrated = Σ ideal·simulated on each side
            ideal = np.array([plain.loc[op, f"t_{side}_s"] for op in on_side])
            calibrated = np.array([tuned.loc[op, "t_est_s"] for op in on_side])
            simulated = np.array([sim[group.loc[op, "role"]] for op in on_side])
            assert (ideal * calibrated).sum() == pytest.approx((ideal * simulated).sum(), rel=1e-6), op_class
            checked += 1
    assert checked >= 1
    untouched = plain.index[~plain["op_class"].isin(list(factors.factors))]
    assert np.allclose(tuned.loc[untouched, "t_est_s"], plain.loc[untouched, "t_est_s"])


def test_a_spec_gives_its_done_slices(selftest, tmp_path, capsys) -> None:
    spec, sliced = selftest
    assert calibrate(capsys, sliced, "-o", tmp_path / "a.yaml")[0] == 0
    code, out, _ = calibrate(capsys, spec, "-o", tmp_path / "b.yaml")
    assert code == 0 and "left out: attention" in out and f"wrote {tmp_path / 'b.yaml'}" in out
    assert load_calibration(tmp_path / "a.yaml").factors == load_calibration(tmp_path / "b.yaml").factors
    code, out, err = calibrate(capsys, sliced, "-o", "-")
    assert code == 0 and yaml.safe_load(out)["factors"] and "role(s) fitted" in err  # summary on stderr


def test_a_table_with_known_factors(tmp_path, capsys) -> None:
    rows = pd.DataFrame(
        {
            "role": ["q_proj", "o_proj", "input_norm", "post_attention_norm", "attention", "layer", "k_proj"],
            "op_classes": ["gemm", "gemm", "norm", "norm", "attention,elementwise", "elementwise", "gemm"],
            "t_compute_s": [2.0, 4.0, 0.01, 0.01, 1.0, 0.01, 1.0],
            "t_memory_s": [1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 0.5],
            "sim_time_s": [4.0, 8.0, 1.25, 2.5, 3.0, 9.0, np.nan],  # gemm compute 0.5, norm bandwidth 0.8
            "compare_at": ["op", "op", "op", "op", "role", "role", "unmatched"],
            "source": "gem5",
            "machine": "gem5-mi300x",
        }
    )
    for name, write in (("ops.csv", rows.to_csv), ("ops.parquet", rows.to_parquet)):
        path = tmp_path / name
        write(path, index=False)
        target = tmp_path / f"{name}.yaml"
        code, out, _ = calibrate(capsys, path, "-o", target, "--json")
        assert code == 0, name
        factors = load_calibration(target)
        assert factors.compute("gemm") == pytest.approx(0.5) and factors.bandwidth("norm") == pytest.approx(
            0.8
        )
        summary = json.loads(out)
        assert {i["role"] for i in summary["left_out"]} == {"attention", "layer", "k_proj"}
        assert not summary["selftest"] and summary["roles_fitted"] == 4
        assert all(c["mape_after_pct"] == pytest.approx(0.0, abs=1e-9) for c in summary["classes"])


# -- bad input: one line naming the file (and column), exit 2, nothing written ---------------------


def bare_join(selftest, path: Path) -> Path:
    from reports.join import estimated_ops, join, simulated_kernels

    _, sliced = selftest
    join(simulated_kernels(sliced), estimated_ops(sliced)).to_csv(path, index=False)
    return path


GOOD = "role,op_class,t_compute_s,t_memory_s,time_s\nq_proj,gemm,1e-6,2e-6,4e-6\n"
TABLES = {
    "empty.csv": (b"", "not a readable CSV table"),
    "garbage.parquet": (bytes(range(256)) * 4, "not a readable parquet table"),
    "no_sides.csv": (b"role,op_class,time_s\nq_proj,gemm,1\n", "missing column 't_compute_s'"),
    "no_class.csv": (b"role,t_compute_s,t_memory_s,time_s\nq_proj,1,1,1\n", "missing column 'op_class'"),
    "no_time.csv": (b"role,op_class,t_compute_s,t_memory_s\nq_proj,gemm,1,1\n", "missing column 'time_s'"),
    "text_time.csv": ((GOOD + "o_proj,gemm,1,1,fast\n").encode(), "line 3: column 'time_s' is not a number"),
    "bad_class.csv": ((GOOD + "o_proj,gemmm,1,1,1\n").encode(), "line 3: column 'op_class': unknown op class 'gemmm'"),
    "all_mixed.csv": (b"role,op_class,t_compute_s,t_memory_s,time_s\nattention,mixed,1,1,1\n", "no role to fit"),
    "notes.txt": (b"hello\n", "expected a sliced run directory, an experiment spec"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TABLES))
def test_bad_tables(tmp_path, capsys, name) -> None:
    data, message = TABLES[name]
    path = tmp_path / name
    path.write_bytes(data)
    target = tmp_path / "out.yaml"
    code, out, err = calibrate(capsys, path, "-o", target)
    assert code == 2 and out == "" and not target.exists()
    assert err.count("\n") == 1 and str(path) in err and message in err, err


def test_bad_runs_and_options(selftest, tmp_path, capsys) -> None:
    spec, sliced = selftest
    target = tmp_path / "out.yaml"
    table = tmp_path / "good.csv"
    table.write_text(GOOD)
    other = tmp_path / "cu8"  # the same run, told it simulated another machine
    shutil.copytree(sliced, other)
    params = json.loads((other / "params.json").read_text())
    params["machine"]["gpu"]["num_cus"] = 8
    (other / "params.json").write_text(json.dumps(params))
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    cases = [
        ([tmp_path / "missing.csv"], "missing.csv: no such file or directory"),
        ([empty], f"{empty}: not a run directory (no params.json)"),
        ([sliced.parent / "census"], "no slice.json"),
        ([bare_join(selftest, tmp_path / "joined.csv")], "missing column 't_compute_s' (a bare reports.join.join table"),
        ([table, "--estimator", "waves"], "a table holds the roofline's sides"),
        ([sliced, "--estimator", "simple"], "--estimator simple ignores calibration factors"),
        ([sliced, other], f"{other}: another simulated machine"),
        ([spec, "--workspace", tmp_path / "nowhere"], "no runs yet"),
        ([sliced, "--json", "-o", "-"], "choose one"),
    ]  # fmt: skip
    for argv, message in cases:
        output = [] if "-o" in argv else ["-o", target]
        code, out, err = calibrate(capsys, *argv, *output)
        assert code == 2 and out == "" and not target.exists(), argv
        assert err.count("\n") == 1 and message in err, (argv, err)
    code, _, err = calibrate(capsys, sliced, "-o", tmp_path / "no" / "dir" / "x.yaml")
    assert code == 2 and "no such directory" in err and err.count("\n") == 1
    code, _, err = calibrate(capsys, sliced)
    assert code == 2 and "-o/--output" in err
