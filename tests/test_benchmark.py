"""`xmeta benchmark`: the --quick smoke run on the real encoder and data, resuming, and its errors."""

from __future__ import annotations

import json
import time
from itertools import pairwise

import pytest

from xmeta.cli import main
from xmeta.evaluation.benchmark import ALL_ROWS, DEFAULT_METHOD_NAMES, METHODS, Plan


def test_plan_shots_per_method_kind():
    plan = Plan(targets=["yo"], extra_targets=[], shots=[0, 1, 4], ablation_shots=[0, 4], seeds=[0, 1],
                methods=list(METHODS), meta_steps=10)
    shots = {m.name: plan.shots_for(m) for m in METHODS}
    assert shots["joint"] == [0] and shots["oracle"] == [ALL_ROWS]
    assert shots["target-only"] == [1, 4]  # an untrained head has no zero-shot score
    assert shots["probe"] == [0, 1, 4, ALL_ROWS]
    assert shots["xmeta+sa"] == [0, 4] and shots["xmeta-full"] == [0, 1, 4]
    for extra in ("joint-ft-2x", "xmeta-fomaml-2x"):  # twice the budget: opt-in
        assert shots[extra] == [0, 4] and extra not in DEFAULT_METHOD_NAMES
    assert plan.joint_steps == 10 * 4 * 4 * 32 // 32  # the same number of example passes as meta-training


def test_unknown_method_is_one_line_error(tmp_path, capsys):
    assert main(["benchmark", "--out", str(tmp_path / "b"), "--methods", "probe,magic"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "magic" in err


@pytest.mark.real
def test_quick_benchmark_runs_every_method_and_resumes(tmp_path, capsys):
    out = tmp_path / "bench"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- benchmark:start -->\nold\n<!-- benchmark:end -->\ntail\n", encoding="utf-8")
    assert main(["benchmark", "--quick", "--out", str(out), "--update_readme", str(readme)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == set(DEFAULT_METHOD_NAMES)
    for name, row in results["summary"].items():
        scores = row["targets"]
        assert scores, name
        assert all(0.0 <= cell["macro_f1_mean"] <= 1.0 for cell in scores.values())
    runs = results["runs"]
    assert {r["method"] for r in runs} == set(DEFAULT_METHOD_NAMES)
    assert all(r["shot_items"] for r in runs if r["k"] > 0)  # shot sets are saved with the numbers
    assert (out / "accuracy_vs_shots.png").stat().st_size > 0
    table = (out / "results.md").read_text()
    assert "| xmeta-full |" in table and "Reproduce:" in table
    text = readme.read_text()
    assert "old" not in text and "| probe |" in text and text.endswith("tail\n")

    # a second run finds every number cached: nothing is trained or adapted again
    before = {p: p.stat().st_mtime for p in (out / "cache").rglob("*.json")}
    capsys.readouterr()
    start = time.perf_counter()
    assert main(["benchmark", "--quick", "--out", str(out)]) == 0
    assert time.perf_counter() - start < 60
    assert {p: p.stat().st_mtime for p in (out / "cache").rglob("*.json")} == before


def test_report_quotes_the_command_without_report_flags():
    from xmeta.commands import reproducing_command

    argv = ["--out", "b", "--report_only", "--update_readme", "README.md", "--seeds", "3", "--update_readme=R.md"]
    assert reproducing_command(argv) == "xmeta benchmark --out b --seeds 3"


def test_speed_ladder_times_every_rung_on_the_same_episodes(tiny_encoder_dir, tmp_path):
    """The speed benchmark on the tiny encoder and real CLDR episodes: every rung measured in its own
    process, neighbour gains and xmeta ratios consistent with the times, a profile, the adapt time, md and png."""
    from xmeta.evaluation.speed import VARIANTS, speed_benchmark, speed_markdown

    out = tmp_path / "speed"
    speed_benchmark(out, steps=1, warmup=0, encoder=str(tiny_encoder_dir), max_length=32, meta_batch=2, adapt_runs=1)
    results = json.loads((out / "speed.json").read_text())
    timed = [v.name for v in VARIANTS if v.way != "learn2learn"]
    seconds = {n: results["variants"][n]["median_seconds"] for n in timed}
    assert all(s > 0 for s in seconds.values()) and all(results["variants"][n]["peak_rss_mb"] > 0 for n in timed)
    for low, high in pairwise(timed):
        assert results["gains"][f"{low} -> {high}"] == pytest.approx(seconds[low] / seconds[high])
    assert results["ratios"]["xmeta/deepcopy"] == pytest.approx(seconds["xmeta"] / seconds["deepcopy"])
    profile = results["variants"]["xmeta"]["profile"]
    assert profile and all(p["self_cpu_s"] >= 0 for p in profile) and sum(p["share"] for p in profile) <= 1 + 1e-9
    assert results["variants"]["xmeta"]["adapt"]["examples"] == 8 * 4
    assert (out / "speed.md").read_text() == speed_markdown(results) and (out / "speed.png").stat().st_size > 0
    assert "| deepcopy+dynamic-padding |" in speed_markdown(results) and "Profile of one default" in speed_markdown(results)
