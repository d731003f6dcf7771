"""The benchmark suite in smoke mode: the command runs, writes the files, and the JSON holds
machine info and tables with rows; plus the verdict rules on hand-made numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from benchmarks import claims, report
from benchmarks.__main__ import main
from benchmarks.suite import SCHEMA, TASKS, parse_tasks, run_suite

MACHINE_KEYS = {"platform", "processor", "cpu_count", "torch", "torch_threads", "device"}
TOP_KEYS = {
    "schema",
    "suite",
    "tasks_requested",
    "device",
    "seed",
    "date",
    "machine",
    "git_commit",
    "results",
    "errors",
    "tables",
    "plots",
    "timings_s",
    "wall_s",
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bench")
    # The suite's own tasks; the task modules are covered by their own tests and add minutes.
    record = run_suite("smoke", ["speed", "claims"], out=out, progress=False)
    return out, record


def test_smoke_writes_files_and_schema(smoke_run):
    out, record = smoke_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == record
    assert TOP_KEYS <= set(record)
    assert record["schema"] == SCHEMA and record["suite"] == "smoke"
    assert MACHINE_KEYS <= set(record["machine"])
    assert record["machine"]["cpu_count"] >= 1
    assert isinstance(record["git_commit"], str) and record["git_commit"]
    assert record["errors"] == []
    for name in ("speed", "claims"):
        entry = record["results"][name]
        assert entry["status"] == "ok", entry["error"]
        assert entry["wall_s"] >= 0 and record["timings_s"][name] == entry["wall_s"]
    md = (out / "results.md").read_text()
    assert "Claims at a glance" in md and record["git_commit"] in md
    for png in record["plots"]:
        assert (out / png).stat().st_size > 1000
    assert {"quality_vs_nfe.png", "quality_vs_time.png", "loss_curves.png"} <= set(record["plots"])


def test_every_table_has_rows_and_columns(smoke_run):
    _, record = smoke_run
    names = {t["name"] for t in record["tables"]}
    expected = {
        "speed_step_cost",
        "speed_sampling_latency",
        "claims_lambda_ode",
        "claims_lambda_images",
        "claims_warmup_length",
        "claims_schedule_shape",
        "claims_low_data",
        "claims_ood",
        "claims_jvp_overhead",
        "claims_tangent",
    }
    assert expected <= names
    for t in record["tables"]:
        assert t["rows"], t["name"]
        assert t["columns"] and all(set(r) <= set(t["columns"]) for r in t["rows"])
    for t in record["tables"]:
        if t["task"] == "claims":
            assert t["verdict"]
            assert any(v in t["verdict"] for v in ("supported", "inconclusive"))
    lam = next(t for t in record["tables"] if t["name"] == "claims_lambda_ode")
    assert [r["variant"] for r in lam["rows"]] == ["λ = 0", "λ = 0.5", "λ = 1", "linear warm-up"]
    assert all(r["seeds"] == len(claims.CLAIMS_CONFIGS["smoke"].seeds) for r in lam["rows"])


def test_broken_task_is_recorded_not_fatal(tmp_path, monkeypatch):
    def boom(suite, device, out, seed):
        raise RuntimeError("task exploded")

    def fine(suite, device, out, seed):
        return {"rows": [{"method": "MMF", "score": float("nan")}]}

    monkeypatch.setitem(TASKS, "ode", boom)
    monkeypatch.setitem(TASKS, "control", fine)
    record = run_suite("smoke", "ode,control", out=tmp_path, progress=False, plots=False)
    assert record["results"]["ode"]["status"] == "failed"
    assert "task exploded" in record["results"]["ode"]["error"]
    assert record["errors"] == [{"task": "ode", "error": "RuntimeError: task exploded"}]
    assert record["results"]["control"]["status"] == "ok"
    # NaN becomes null: results.json is strict JSON.
    assert record["results"]["control"]["result"]["rows"][0]["score"] is None
    assert [t["name"] for t in record["tables"]] == ["control_rows"]
    assert json.loads((tmp_path / "results.json").read_text())["errors"]


def test_cli_rejects_unknown_task(capsys):
    assert main(["--suite", "smoke", "--tasks", "speed,nope", "--out", "unused"]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(ValueError, match="tasks"):
        parse_tasks("")


def test_compare_rules():
    # Clear improvement (lower is better): > 2 SE.
    c = claims.compare([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    assert c.outcome == "better" and claims.verdict_for(c.outcome) == "supported"
    assert math.isclose(c.diff, -1.0)
    assert math.isclose(c.se, math.sqrt(0.01 / 3 + 0.01 / 3))
    assert claims.compare([2.0, 2.1, 1.9], [1.0, 1.1, 0.9]).outcome == "worse"
    # Higher is better flips the direction.
    assert claims.compare([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], lower_is_better=False).outcome == (
        "better"
    )
    # Tight and close: equivalent, which does not support "A beats B".
    eq = claims.compare([1.0, 1.001, 0.999], [1.0, 1.002, 0.998])
    assert eq.outcome == "equivalent" and claims.verdict_for(eq.outcome) == "not supported"
    # Noisy: cannot tell.
    noisy = claims.compare([1.0, 3.0, 0.2], [1.5, 0.1, 2.6])
    assert noisy.outcome == "no detectable difference"
    assert claims.verdict_for(noisy.outcome) == "inconclusive"
    # One seed is never enough; NaN (diverged) runs are dropped.
    assert claims.compare([1.0], [2.0, 2.1]).outcome == "no detectable difference"
    assert claims.compare([1.0, float("nan"), 1.1, 0.9], [2.0, 2.1, 1.9]).n_a == 3
    assert claims.combine(["supported", "supported"]) == "supported"
    assert claims.combine(["supported", "not supported"]) == "not supported"
    assert claims.combine(["supported", "inconclusive"]) == "inconclusive"


def test_generic_tables_from_unknown_result():
    record = {
        "results": {
            "ode": {
                "status": "ok",
                "result": {
                    "suite": "smoke",
                    "wall_s": 1.5,
                    "rows": [{"method": "MMF", "rel_l2": 0.1, "curve": list(range(50))}],
                    "targets": {"a": {"met": True, "value": 0.3}},
                },
            },
            "control": {"status": "failed", "result": None},
        }
    }
    tables = report.collect_tables(record)
    by_name = {t["name"]: t for t in tables}
    assert by_name["ode_summary"]["rows"] == [{"suite": "smoke", "wall_s": 1.5}]
    # Long per-time lists are left out of table cells.
    assert by_name["ode_rows"]["columns"] == ["method", "rel_l2"]
    assert by_name["ode_targets"]["rows"] == [{"name": "a", "met": True, "value": 0.3}]
    assert not any(t["task"] == "control" for t in tables)
    assert "| MMF | 0.1 |" in report.table_markdown(by_name["ode_rows"])


def test_every_task_defines_every_suite():
    """``--suite NAME`` must mean something in each task, not fail deep inside a run."""
    from benchmarks import (
        chaos_lambda,
        claims,
        control,
        images,
        metaworld_lambda,
        ode,
        speed_step,
        streaming,
    )
    from benchmarks.suite import ESTIMATED_S, SUITES

    tables = (ode.SUITES, images.SUITES, control.SUITES, claims.CLAIMS_CONFIGS, streaming.SUITES,
              chaos_lambda.SUITES, metaworld_lambda.SUITES)  # fmt: skip
    for table in tables:
        assert set(table) == set(SUITES)
    assert set(speed_step.SUITES) == set(SUITES) == set(ESTIMATED_S)
    assert all(set(ESTIMATED_S[s]) == set(TASKS) for s in SUITES)


def test_control_smoke_has_a_method_table(tmp_path):
    """The control task's per-method rows reach the suite's tables (and its NFE plot)."""
    from benchmarks import control

    result = control.run("smoke", device="cpu", out=tmp_path)
    (table,) = result["tables"]
    variants = [r["variant"] for r in table["rows"]]
    assert variants[0] == "expert" and {"mmf-1", "bc", "fm-10"} <= set(variants)
    for row in table["rows"][1:]:
        assert row["NFE"] >= 1 and 0.0 <= row["latency_ms_median"] < 1e4
        assert row["normalised_score"] is not None
    record = {"results": {"control": {"status": "ok", "result": result}}}
    tables = report.collect_tables(record)
    assert any(t["name"].startswith("control_") and t["rows"] for t in tables)
    assert report._table_panels({"tables": tables})  # plotted against NFE


def test_one_step_tracker_scores_the_ema_model_along_training():
    from benchmarks.images_track import run as track

    rows = track("smoke", budget_s=60, steps=12, every=5)
    assert [r["step"] for r in rows] == [5, 10]
    assert all(math.isfinite(r["fd_1step"]) and r["fd_1step"] > 0 for r in rows)
    assert rows[0]["fd_1step"] != rows[1]["fd_1step"]  # the EMA model moved between scores


def test_images_heldout_scores():
    from benchmarks.images import _heldout_scores, _nn_median
    from meanflow_sci.tasks.images import digit_classifier, load_digits

    train, held = load_digits(split="train"), load_digits(split="test")
    ex = digit_classifier()
    ref = _nn_median(train, held.images, held.labels)
    copies = _heldout_scores(train, held, train.images[:300], train.labels[:300], ex, ref)
    new = _heldout_scores(train, held, held.images, held.labels, ex, ref)
    assert copies["nn_train"] == 0.0 and new["nn_train"] == 1.0
    assert copies["fd_heldout"] > new["fd_heldout"] >= 0.0
    noisy = (train.images[:300] + 0.3 * torch.randn(300, 1, 8, 8)).clamp(-1, 1)
    far = _heldout_scores(train, held, noisy, train.labels[:300], ex, ref)
    assert far["nn_train"] > 0.3 and far["fd_heldout"] > copies["fd_heldout"]


def test_time_limit_schedules_the_lr_by_the_clock():
    from types import SimpleNamespace

    from benchmarks.budget import TimeLimit
    from meanflow_sci.train import TrainConfig, get_lr

    cfg = TrainConfig(max_steps=1000, lr=1e-3, lr_warmup_steps=10, min_lr_ratio=0.1)
    trainer = SimpleNamespace(config=cfg, step=100, lr_scale=1.0, rollbacks=0, should_stop=False)
    limit = TimeLimit(10.0, lr_by_time=True)
    limit.start -= 5.0  # half the budget gone: the cosine is at its midpoint
    limit(trainer, {})
    lr = get_lr(trainer.step, cfg) * trainer.lr_scale
    assert lr == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4), rel=1e-3)
    assert not trainer.should_stop
    trainer.rollbacks = 1  # a rollback's halving is kept
    limit(trainer, {})
    assert get_lr(trainer.step, cfg) * trainer.lr_scale == pytest.approx(lr / 2, rel=1e-3)
    limit.start -= 6.0
    limit(trainer, {})
    assert trainer.should_stop
    assert get_lr(trainer.step, cfg) * trainer.lr_scale == pytest.approx(1e-4 / 2, rel=1e-3)


def test_images_run_seeds_judges_the_median_ratio(tmp_path, monkeypatch):
    from benchmarks import images

    fds = {0: (26.0, 20.0), 1: (22.0, 20.0), 2: (34.0, 20.0)}  # ratios 1.3, 1.1, 1.7
    excess = {0: 1.2, 1: None, 2: 1.6}  # None: flow matching at the real level (undefined)

    def fake_run(suite, device, out, seed, threads, overrides):
        mmf, fm = fds[seed]
        row = {"frechet_distance": mmf, "train_steps": 10}
        methods = {
            "MMF 1-step": row,
            "MMF 2-step": {**row, "frechet_distance": mmf - 1},
            "FM 1-step": {"frechet_distance": 600.0, "train_steps": 12},
            "FM 50-step": {"frechet_distance": fm, "train_steps": 12},
        }
        assert out == tmp_path / f"seed{seed}" and threads == 1 and overrides == {"omega": 1.0}
        return {
            "methods": methods,
            "target": {"metric": "FD(MMF 1-step) / FD(FM 50-step)", "value": mmf / fm},
            "target_heldout": {"metric": "excess, held-out digits", "value": excess[seed]},
        }

    monkeypatch.setattr(images, "run", fake_run)
    summary = images.run_seeds(
        [0, 1, 2], "smoke", out=tmp_path, threads=1, overrides={"omega": 1.0}
    )
    assert summary["target"]["value"] == 1.3 and summary["target"]["met"]
    assert summary["target"]["seeds_met"] == 2
    assert [r["seed"] for r in summary["per_seed"]] == [0, 1, 2]
    assert summary["per_seed"][2]["FM"] == 20.0
    held = summary["target_heldout"]
    assert held["value"] == 1.4 and held["seeds_defined"] == 2 and not held["met"]
    table = (tmp_path / "images_seeds.md").read_text()
    assert "| 2 | 10 | 34.00 | 33.00 | 12 | 20.00 | 1.700 | 1.600 |" in table
    assert "| 1.100 | undefined" in table
    assert "met on 2 of 3 seeds" in table
    with pytest.raises(ValueError, match="seeds: expected distinct"):
        images.run_seeds([1, 1], "smoke")
    with pytest.raises(ValueError, match="jobs: expected a positive"):
        images.run_seeds([1], "smoke", jobs=0)


def test_write_results_replaces_both_files_and_a_failed_write_keeps_the_old_ones(tmp_path):
    folder = tmp_path / "new" / "dir"
    report.write_results(folder, "images", {"ratio": 1.25}, "| ratio |\n")
    assert json.loads((folder / "images.json").read_text()) == {"ratio": 1.25}
    assert (folder / "images.md").read_text() == "| ratio |\n"
    with pytest.raises(ValueError):
        report.write_results(folder, "images", {"ratio": math.nan}, "| nan |\n", allow_nan=False)
    assert json.loads((folder / "images.json").read_text()) == {"ratio": 1.25}
    assert (folder / "images.md").read_text() == "| ratio |\n"
    assert sorted(p.name for p in folder.iterdir()) == ["images.json", "images.md"]


def test_images_fm_omega_sets_flow_matchings_guidance_alone():
    from dataclasses import replace

    from benchmarks.images import SUITES, configure, parse_overrides, recipes_for

    cfg = configure("smoke", parse_overrides(["omega=1.2", "fm_omega=1.0"]))
    assert recipes_for(cfg)["mmf"].objective.guidance["omega"] == 1.2
    assert recipes_for(cfg)["fm"].objective.guidance is None
    shared = replace(SUITES["smoke"], omega=1.2)  # fm_omega None: the same scale for both
    assert recipes_for(shared)["fm"].objective.guidance["omega"] == 1.2


def test_images_fine_detail_sees_what_the_8x8_extractor_averages_away():
    from benchmarks.images import _fine_detail
    from meanflow_sci.tasks.images import load_digits

    assert _fine_detail(load_digits(size=8).images[:64]) is None
    real = load_digits(size=16).images[:256]
    gen = torch.Generator().manual_seed(0)
    noisy = real + 0.2 * torch.randn(real.shape, generator=gen)
    level, with_noise = _fine_detail(real), _fine_detail(noisy)
    # White noise of std 0.2 adds about 0.04 per pixel, 3/4 of it above the 8x8 scale.
    assert with_noise - level > 0.5 * 0.04 * 256
    assert level < 0.5 * with_noise


def test_meta_world_smoke_has_success_table(tmp_path):
    from benchmarks import meta_world as bench
    from meanflow_sci.tasks.control import meta_world

    with pytest.raises(ValueError, match="methods: expected some of"):
        bench.run("smoke", methods=("mmf-1", "ddpm"))
    if not meta_world.available():
        assert "skipped" in bench.run("smoke")
        pytest.skip('Meta-World benchmark needs the metaworld extra (pip install ".[metaworld]")')
    torch.set_num_threads(1)
    subset = bench.run("smoke", methods=("mmf-1", "bc"), steps=5)
    assert subset["methods"] == ["mmf-1", "bc"] and subset["config"]["steps"] == 5
    assert set(subset["targets"]) == {"mean_success"}  # the FM-100 targets need FM-100
    report = bench.run("smoke", out=tmp_path)
    row = report["tables"][0]["rows"][0]
    assert row["task"] == "reach-v3" and row["group"] == "easy"
    assert set(bench.METHODS) <= set(row)
    per = report["per_task"]["reach-v3"]
    assert all(0.0 <= per[m]["success"] <= 1.0 for m in bench.METHODS)
    assert report["targets"]["latency_fm100_over_mmf"]["value"] > 1.0
    assert (tmp_path / "metaworld.md").exists()


def _fake_metaworld_run(tmp_path, name, seed, tasks, hits, demos=50):
    """A metaworld.json as one training seed's run writes it, with given successes per task."""
    from benchmarks import meta_world as bench
    from benchmarks.report import write_results

    def method(flags):
        return {"successes": flags, "success_rate": float(np.mean(flags)), "action_change": 0.1,
                "latency_ms_median": 1.0, "latency_ms_p95": 2.0, "train_time_s": 3.0,
                "eval_time_s": 4.0}  # fmt: skip

    runs = {t: [{"methods": {m: method(hits[t][m]) for m in bench.METHODS},
                 "expert": {"success_rate": 1.0, "action_change": 0.05}}]
            for t in tasks}  # fmt: skip
    cfg = dict(bench.SUITES["full"], tasks=list(tasks), demos=demos, seeds=1, eval_seed=10_000)
    machine = {"torch": "x", "torch_threads": 1}
    report = {"suite": "full (subset)", "seed": seed, "config": cfg, "machine": machine,
              "methods": list(bench.METHODS), "runs": runs, "time_s": 10.0}  # fmt: skip
    write_results(tmp_path / name, "metaworld", report, "")
    return tmp_path / name


def test_meta_world_merge_pools_seeds_and_refuses_overlap(tmp_path):
    from benchmarks import meta_world as bench

    ones, zeros = [True, True], [False, False]
    a = _fake_metaworld_run(tmp_path, "a", 0, ["push-v3", "reach-v3"],
                            {"push-v3": dict.fromkeys(bench.METHODS, ones),
                             "reach-v3": dict.fromkeys(bench.METHODS, zeros)})  # fmt: skip
    bc_fails = {**dict.fromkeys(bench.METHODS, ones), "bc": zeros}
    b = _fake_metaworld_run(tmp_path, "b", 1, ["reach-v3"], {"reach-v3": bc_fails})
    merged = bench.merge([a, b], tmp_path / "all")
    assert merged["config"]["tasks"] == ["reach-v3", "push-v3"]  # the benchmark's task order
    assert merged["seeds_per_task"] == {"reach-v3": [0, 1], "push-v3": [0]}
    reach = merged["per_task"]["reach-v3"]
    assert reach["mmf-1"]["success"] == 0.5 and reach["mmf-1"]["success_per_seed"] == [0.0, 1.0]
    assert reach["bc"]["success"] == 0.0
    assert merged["targets"]["mean_success"]["mmf-1"] == 0.75  # mean over the two tasks
    assert merged["targets"]["mmf_vs_bc"]["value"] == 0.25
    assert "mean_success_per_seed" not in merged  # push-v3 has one seed, reach-v3 two
    text = (tmp_path / "all" / "metaworld.md").read_text()
    assert "training seeds per task" in text and "| reach-v3 | easy |" in text
    assert (tmp_path / "all" / "success.png").stat().st_size > 0
    assert (tmp_path / "all" / "latency.png").stat().st_size > 0
    with pytest.raises(ValueError, match="push-v3 seed 0 appears twice"):
        bench.merge([a, a], None)
    c = _fake_metaworld_run(tmp_path, "c", 2, ["push-v3"],
                            {"push-v3": dict.fromkeys(bench.METHODS, ones)}, demos=10)  # fmt: skip
    with pytest.raises(ValueError, match="every run must share"):
        bench.merge([a, c], None)
    with pytest.raises(FileNotFoundError, match="from a Meta-World run"):
        bench.merge([tmp_path / "missing"], None)
    d = _fake_metaworld_run(tmp_path, "d", 1, ["push-v3"],
                            {"push-v3": dict.fromkeys(bench.METHODS, zeros)})  # fmt: skip
    same_seeds = bench.merge([a, b, d], None)
    assert same_seeds["mean_success_per_seed"]["mmf-1"] == [0.5, 0.5]
    e = _fake_metaworld_run(tmp_path, "e", 3, ["push-v3"],
                            {"push-v3": dict.fromkeys(bench.METHODS, zeros)})  # fmt: skip
    again = bench.merge([tmp_path / "all", e], None)  # a merged report merges on
    assert again["seeds_per_task"] == {"reach-v3": [0, 1], "push-v3": [0, 3]}
    assert again["per_task"]["push-v3"]["mmf-1"]["success_per_seed"] == [1.0, 0.0]


def test_chaos_smoke_scores_every_method(tmp_path):
    from benchmarks import chaos

    try:
        import dysts  # noqa: F401
    except ImportError:
        assert "skipped" in chaos.run("smoke")
        pytest.skip('chaos benchmark needs the dysts extra (pip install ".[dysts]")')
    torch.set_num_threads(1)
    report = chaos.run("smoke", out=tmp_path)
    methods = {r["method"] for r in report["forecast"]}
    assert methods == {"solver", "analog", "mmf-1", "mmf-2", "mmf-1 raw", "fm-50"}
    assert {r["method"] for r in report["map"]} >= {"mmf-1", "regression", "nearest neighbour"}
    solver = next(r for r in report["forecast"] if r["method"] == "solver")
    analog = next(r for r in report["forecast"] if r["method"] == "analog")
    assert solver["crps"] < analog["crps"]  # the calibrated reference beats the lookup
    import xarray as xr

    scores = xr.open_dataset(tmp_path / "chaos.nc")
    assert scores["crps"].dims == ("system", "model", "lead_step", "state")
    assert scores["lead_time_value"].dims == ("system", "lead_step")
    assert (tmp_path / "chaos.png").exists() and (tmp_path / "chaos.md").exists()

    # a second flow in a run of its own, joined to the first
    second = chaos.systems_for(2)[1]
    chaos.run("smoke", out=tmp_path / "b", systems=(second,))
    merged = chaos.merge([tmp_path, tmp_path / "b"], tmp_path / "all")
    assert merged["systems"] == [report["systems"][0], second]
    joined = xr.open_dataset(tmp_path / "all" / "chaos.nc")
    assert list(joined["system"].values) == merged["systems"]  # full names, not cut to the first
    part = xr.open_dataset(tmp_path / "b" / "chaos.nc")
    assert np.allclose(joined["crps"].sel(system=second), part["crps"].sel(system=second))
    assert (
        merged["medians"]["crps_mmf1_over_fm50"]
        == chaos.summarise(merged["forecast"], merged["map"])["medians"]["crps_mmf1_over_fm50"]
    )
    with pytest.raises(ValueError, match="appears in two runs"):
        chaos.merge([tmp_path, tmp_path], None)
    with pytest.raises(FileNotFoundError, match="chaos.json"):
        chaos.merge([tmp_path / "missing"], None)


def test_stream_smoke_compares_file_and_memory_per_trajectory_recipe():
    pytest.importorskip("dask")
    pytest.importorskip("netCDF4")
    from benchmarks import streaming

    torch.set_num_threads(1)
    result = streaming.run("smoke")
    (table,) = result["tables"]
    assert {r["recipe"] for r in table["rows"]} == set(streaming.RECIPES)
    for row in table["rows"]:
        assert row["steps/s"] > 0 and row["x memory"] > 0
    assert result["summary"]["median_ratio_0_workers"] > 0


def test_gpu_step_script_runs_its_cpu_path_and_checks_compiled_tangents():
    from benchmarks import gpu_step

    torch.set_num_threads(1)
    result = gpu_step.run("cpu", repeats=1, warmup=0, backend="aot_eager", batch=4)
    names = [r["variant"] for r in result["rows"]]
    assert names[0] == "eager" and "graph" not in names
    assert "CUDA" in result["notes"]["graph"]
    check = result["notes"]["compile_check"]
    assert check["output_rel"] <= 1e-5 and check["tangent_rel"] <= 1e-5, check
    assert "compile" in names and all(r["ms"] > 0 for r in result["rows"])


def test_metaworld_lambda_smoke_judges_the_curriculum_per_task_and_tangent():
    from benchmarks import metaworld_lambda
    from meanflow_sci.tasks.control import meta_world

    if not meta_world.available():
        assert "skipped" in metaworld_lambda.run("smoke")
        pytest.skip('Meta-World benchmark needs the metaworld extra (pip install ".[metaworld]")')
    torch.set_num_threads(1)
    result = metaworld_lambda.run("smoke")
    assert len(result["tables"]) == 2  # one task x two tangents
    for table in result["tables"]:
        assert [r["variant"] for r in table["rows"]][-1] == "linear warm-up"
        assert table["metric"] == "failure rate (1-step)"
    assert sum(sum(c.values()) for c in result["verdict_counts"].values()) == 6


def test_chaos_lambda_smoke_judges_the_curriculum_per_system_and_tangent():
    pytest.importorskip("dysts")
    from benchmarks import chaos_lambda

    torch.set_num_threads(1)
    result = chaos_lambda.run("smoke")
    assert len(result["tables"]) == 2  # one system x two tangents
    for table in result["tables"]:
        assert [r["variant"] for r in table["rows"]][-1] == "linear warm-up"
        assert set(table["verdicts"]) == {
            "better final quality", "lower training-loss variance", "fewer divergences"
        }  # fmt: skip
    assert sum(sum(c.values()) for c in result["verdict_counts"].values()) == 6
