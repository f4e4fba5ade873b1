"""`xmeta benchmark`: the --quick smoke run on the real encoder and data, resuming, and its errors."""

from __future__ import annotations

import json
import time
from itertools import pairwise
from pathlib import Path

import pytest

from xmeta.cli import main
from xmeta.errors import ArgumentError
from xmeta.evaluation.benchmark_cache import resolved_settings, without_neutral
from xmeta.evaluation.benchmark_plan import ALL_ROWS, DEFAULT_METHOD_NAMES, METHODS, Plan
from xmeta.meta.trainer import MetaTrainingArguments
from xmeta.train import EncoderArguments


def test_plan_shots_per_method_kind():
    plan = Plan(targets=["yo"], extra_targets=[], shots=[0, 1, 4], ablation_shots=[0, 4], seeds=[0, 1],
                methods=list(METHODS), meta_steps=10)
    shots = {m.name: plan.shots_for(m) for m in METHODS}
    assert shots["joint"] == [0] and shots["oracle"] == [ALL_ROWS]
    assert shots["target-only"] == [1, 4]  # an untrained head has no zero-shot score
    assert shots["probe"] == [0, 1, 4, ALL_ROWS]
    assert shots["xmeta+sa"] == [0, 4] and shots["xmeta-fomaml"] == [0, 4] and shots["xmeta"] == [0, 1, 4]
    for extra in ("joint-ft-2x", "xmeta-2x"):  # twice the budget: opt-in
        assert shots[extra] == [0, 4] and extra not in DEFAULT_METHOD_NAMES


def test_joint_budget_follows_the_episode_shape():
    """B1 passes as many examples through the model as meta-training: meta-batch × n_way ×
    (inner steps × k_shot + k_query) per meta-step, for the task's own label count and shots."""
    plan = Plan(targets=["yo"], extra_targets=[], shots=[4], ablation_shots=[4], seeds=[0], methods=list(METHODS),
                meta_steps=10)
    assert plan.joint_steps(n_way=8) == 10 * 4 * 8 * (3 * 4 + 4) // 32 == 160
    assert plan.joint_steps(n_way=3) == 10 * 4 * 3 * 16 // 32 == 60
    wide = Plan(targets=["yo"], extra_targets=[], shots=[4], ablation_shots=[4], seeds=[0], methods=list(METHODS),
                meta_steps=10, inner_steps=5, k_shot=2, k_query=6)
    assert wide.joint_steps(n_way=8) == 10 * 4 * 8 * (5 * 2 + 6) // 32 == 160
    assert wide.joint_steps(n_way=2) == 40


def test_unknown_method_is_one_line_error(tmp_path, capsys):
    assert main(["benchmark", "--out", str(tmp_path / "b"), "--methods", "probe,magic"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "magic" in err


REAL_QUICK_METHODS = "probe,joint,joint-ft,target-only,xmeta,xmeta+text,oracle"  # every kind of row


@pytest.mark.real
def test_quick_benchmark_runs_every_kind_of_row_and_resumes(tmp_path, capsys):
    """One row of each kind on the real encoder and data (the ablations differ from `xmeta` only in
    flags, each tested on the real encoder in its own file)."""
    out = tmp_path / "bench"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- benchmark:start -->\nOLD-RESULTS\n<!-- benchmark:end -->\ntail\n", encoding="utf-8")
    methods = ("--methods", REAL_QUICK_METHODS)
    assert main(["benchmark", "--quick", "--out", str(out), "--update_readme", str(readme), *methods]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == set(REAL_QUICK_METHODS.split(","))
    runs = results["runs"]
    for name, row in results["summary"].items():  # every summary number is the mean of its cells
        for k, cell in row["targets"].items():
            f1 = [r["macro_f1"] for r in runs if r["method"] == name and str(r["k"]).replace("-1", "all") == k]
            assert cell["macro_f1_mean"] == pytest.approx(sum(f1) / len(f1)), (name, k)
    assert {r["method"] for r in runs} == set(REAL_QUICK_METHODS.split(","))
    assert all(r["shot_items"] for r in runs if r["k"] > 0)  # shot sets are saved with the numbers
    assert (out / "accuracy_vs_shots.png").stat().st_size > 0
    table = (out / "results.md").read_text()
    assert "| xmeta |" in table and "Reproduce:" in table
    text = readme.read_text()
    assert "OLD-RESULTS" not in text and "| probe |" in text and text.endswith("tail\n")

    # a second run finds every number cached: nothing is trained or adapted again
    before = {p: p.stat().st_mtime for p in (out / "cache").rglob("*.json")}
    capsys.readouterr()
    start = time.perf_counter()
    assert main(["benchmark", "--quick", "--out", str(out), *methods]) == 0
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


def small_card(tmp_path, name: str, sources: str, dev_fraction: float = 0.15):
    """A CLDR emoji card of a few sources and one target (yo): the benchmark on the tiny encoder in a minute."""
    from xmeta.data.cards import _tasks_dir

    text = (_tasks_dir() / "cldr-emoji.yaml").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        if line.startswith("name:"):
            line = f"name: {name}"
        elif line.startswith("  sources:"):
            line = f"  sources: [{sources}]"
        elif line.startswith("  targets:"):
            line = "  targets: [yo]"
        elif line.startswith("  report_separately:"):
            continue
        elif line.startswith("  dev_fraction:"):
            line = f"  dev_fraction: {dev_fraction}"
        lines.append(line)
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


QUICK_METHODS = "probe,joint-ft,target-only,xmeta-fomaml"


def quick(out, card, encoder, *extra: str) -> dict:
    argv = ["benchmark", "--quick", "--task", str(card), "--encoder", str(encoder), "--out", str(out),
            "--methods", QUICK_METHODS, *extra]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


def cache_files(out) -> dict:
    return {p: p.stat().st_mtime_ns for p in (out / "cache").rglob("*.json")}


def test_every_method_sees_the_same_shots_and_a_changed_card_or_flag_invalidates_the_cache(tmp_path, tiny_encoder_dir):
    """Tiny encoder, real CLDR rows: same shot items for every method at (target, K, seed); a rerun
    serves every cell; another card into the same --out retrains and reports only its own cells;
    a flag that changes the test rows recomputes the cells but reuses the models."""
    from xmeta.data import load_language_tasks, load_task_card, sample_k_shot

    card_a, card_b = small_card(tmp_path, "emoji-a", "en, de, fr, es"), small_card(tmp_path, "emoji-b", "en, de, fr, it")
    out = tmp_path / "bench"
    first = quick(out, card_a, tiny_encoder_dir)
    runs = first["runs"]
    shot_sets = {r["method"]: r["shot_items"] for r in runs if r["k"] == 4 and r["seed"] == 0}
    assert set(shot_sets) == set(QUICK_METHODS.split(","))
    train = load_language_tasks(load_task_card(card_a), ["yo"], "train")["yo"]
    expected = [train.item_ids[i] for i in sample_k_shot(train, 4, seed=0)]
    assert all(items == expected for items in shot_sets.values()), shot_sets
    assert len({tuple(r["test_items"]) for r in runs}) == 1 and len(runs[0]["test_items"]) == 8 * 2
    for r in runs:  # a cell is stored under its own fingerprint
        assert (out / "cache" / r["method"] / "yo").glob(f"*-{r['fingerprint'][:12]}.json")
    assert first["stale_cells"] == 0 and first["settings"]["target_text"] == "none"

    served = cache_files(out)
    quick(out, card_a, tiny_encoder_dir)
    assert cache_files(out) == served  # nothing recomputed

    second = quick(out, card_b, tiny_encoder_dir)
    assert {r["fingerprint"] for r in second["runs"]}.isdisjoint({r["fingerprint"] for r in runs})
    assert len(second["runs"]) == len(runs) and second["stale_cells"] == len(runs)
    models = sorted(p.name.rsplit("-", 1)[0] for p in (out / "models").iterdir() if p.is_dir())
    assert models == ["joint", "joint", "xmeta-fomaml", "xmeta-fomaml"]  # each card trained its own

    again = quick(out, card_a, tiny_encoder_dir, "--report_only")  # card A's cells, still there, not B's
    assert [r["fingerprint"] for r in again["runs"]] == [r["fingerprint"] for r in runs]

    served = cache_files(out)
    quick(out, card_a, tiny_encoder_dir, "--target_text", "train")  # none of these methods reads target text
    assert cache_files(out) == served


def test_each_setting_changes_the_fingerprints_it_determines(tmp_path, tiny_encoder_dir):
    """Without training: every setting that determines a model, tuning or cell changes its fingerprint,
    and only those it determines."""
    from dataclasses import replace

    from xmeta.arguments import BenchmarkCommand
    from xmeta.evaluation.benchmark import Benchmark
    from xmeta.evaluation.benchmark_plan import plan_from

    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    methods = {m.name: m for m in METHODS}
    plan = plan_from(BenchmarkCommand(task=str(card), methods=",".join(methods)), ("yo",))

    def prints(changed_plan=plan, task=card):
        bench = Benchmark(changed_plan, tmp_path / "b", str(task), str(tiny_encoder_dir))
        return ({m: bench.model_fingerprint(methods[m]) for m in methods},
                {m: bench.cell_fingerprint(methods[m], "yo", 4, 0) for m in methods if m not in ("joint", "oracle")},
                {m: bench.tuning_fingerprint(methods[m]) for m in ("joint-ft", "target-only")})

    base = prints()
    assert base == prints()  # stable
    models, cells, tuning = prints(replace(plan, meta_steps=plan.meta_steps + 1))
    assert {m for m in models if models[m] != base[0][m]} == {m for m in methods if methods[m].kind not in ("probe", "target-only")}
    models, cells, tuning = prints(replace(plan, training_seed=1))  # every trained model; the probe trains nothing seeded
    assert {m for m in models if models[m] != base[0][m]} == {m for m in methods if methods[m].kind != "probe"}
    assert {m for m in cells if cells[m] != base[1][m]} == {m for m in cells if methods[m].kind != "probe"}
    models, cells, tuning = prints(replace(plan, test_per_class=3))
    assert models == base[0] and tuning == base[2] and all(cells[m] != base[1][m] for m in cells)
    models, cells, tuning = prints(replace(plan, target_text="train"))
    assert models == base[0] and {m for m in cells if cells[m] != base[1][m]} == {"xmeta+me", "xmeta-full"}
    models, cells, tuning = prints(replace(plan, tuning_steps=[10]))
    assert models == base[0] and {m for m in cells if cells[m] != base[1][m]} == {m for m in cells if methods[m].kind in ("joint-ft", "target-only")}
    other = card.with_name("other.yaml")
    other.write_text(card.read_text().replace("seed: 0", "seed: 1", 1))  # another split of the same rows
    assert all(a != b for a, b in zip(prints(task=other)[0].values(), base[0].values()))


def test_sources_flag_replaces_the_cards_sources_for_every_method(tmp_path, tiny_encoder_dir):
    """`--sources` trains every method on the languages named, in their order (their fingerprints say so; the card's
    own list is the card's models); a target named as a source is refused in one line."""
    from xmeta.arguments import BenchmarkCommand
    from xmeta.evaluation.benchmark import Benchmark
    from xmeta.evaluation.benchmark_plan import plan_from

    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    methods = {m.name: m for m in METHODS}

    def bench(sources=""):
        plan = plan_from(BenchmarkCommand(task=str(card), methods="xmeta,joint-ft,probe", sources=sources), ("yo",))
        return Benchmark(plan, tmp_path / "b", str(card), str(tiny_encoder_dir))

    default, named, reordered = bench(), bench("de,fr"), bench("fr,de")
    assert default.sources == ["en", "de", "fr", "es"] and named.sources == ["de", "fr"]
    assert sorted(named.source_train) == sorted(named.source_dev) == ["de", "fr"]
    assert bench("en,de,fr,es").model_fingerprint(methods["xmeta"]) == default.model_fingerprint(methods["xmeta"])
    for m in ("xmeta", "joint-ft", "probe"):
        assert len({b.model_fingerprint(methods[m]) for b in (default, named, reordered)}) == 3
    with pytest.raises(ArgumentError, match=r"^--sources: 'yo' is also a target$"):
        bench("de,yo")


def test_sources_flag_reaches_meta_training(tmp_path, tiny_encoder_dir, monkeypatch):
    """xmeta's model meta-trains on `--sources` as B1 and the probe train on them (not the card's)."""
    from xmeta.arguments import BenchmarkCommand
    from xmeta.evaluation import benchmark_models
    from xmeta.evaluation.benchmark import Benchmark
    from xmeta.evaluation.benchmark_plan import plan_from

    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    bench = Benchmark(plan_from(BenchmarkCommand(task=str(card), methods="xmeta", sources="fr,de"), ("yo",)),
                      tmp_path / "b", str(card), str(tiny_encoder_dir))
    seen = []

    def meta_train(cmd, *_args):
        seen.append(cmd.sources)
        raise RuntimeError("stop here")

    monkeypatch.setattr(benchmark_models, "meta_train", meta_train)
    with pytest.raises(RuntimeError, match="stop here"):
        bench.meta_trained(next(m for m in METHODS if m.name == "xmeta"))
    assert seen == ["fr,de"]


def test_default_row_meta_trains_lora_in_every_layer_and_top4_row_in_four(tmp_path, tiny_encoder_dir, monkeypatch):
    """`xmeta` reaches meta-training as `--lora_layers 0` (the default), `xmeta-top4` as 4: models of their own."""
    from xmeta.arguments import BenchmarkCommand
    from xmeta.evaluation import benchmark_models
    from xmeta.evaluation.benchmark import Benchmark
    from xmeta.evaluation.benchmark_plan import plan_from

    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    bench = Benchmark(plan_from(BenchmarkCommand(task=str(card), methods="xmeta,xmeta-top4"), ("yo",)),
                      tmp_path / "b", str(card), str(tiny_encoder_dir))
    methods = {m.name: m for m in METHODS}
    seen = []

    def meta_train(_cmd, _data, encoder, _training):
        seen.append(encoder.lora_layers)
        raise RuntimeError("stop here")

    monkeypatch.setattr(benchmark_models, "meta_train", meta_train)
    for name in ("xmeta", "xmeta-top4"):
        with pytest.raises(RuntimeError, match="stop here"):
            bench.meta_trained(methods[name])
    assert seen == [0, 4]
    assert bench.model_fingerprint(methods["xmeta-top4"]) != bench.model_fingerprint(methods["xmeta"])


def test_all_layers_baselines_build_on_their_own_b1_with_lora_in_every_layer(tmp_path, tiny_encoder_dir):
    """B1/B2 at xmeta's placement: one B1 of their own (not the default B1, LoRA in the top 4), LoRA in every layer."""
    import re

    from xmeta.arguments import BenchmarkCommand
    from xmeta.evaluation.benchmark import Benchmark
    from xmeta.evaluation.benchmark_plan import plan_from

    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    names = "joint,joint-ft,joint-alllayers,joint-ft-alllayers"
    bench = Benchmark(plan_from(BenchmarkCommand(task=str(card), methods=names), ("yo",)),
                      tmp_path / "b", str(card), str(tiny_encoder_dir))
    m = {method.name: method for method in METHODS}
    assert bench.model_dir(m["joint-ft-alllayers"]) == bench.model_dir(m["joint-alllayers"])
    assert bench.model_dir(m["joint-ft"]) == bench.model_dir(m["joint"]) != bench.model_dir(m["joint-alllayers"])

    model = bench.fresh_model(m["joint-alllayers"])
    names = [n for n, _ in model.named_parameters() if re.search(r"layer\.\d+\.", n)]
    index = [re.search(r"layer\.(\d+)\.", n).group(1) for n in names]
    # every layer carries LoRA (the tiny encoder has 2 layers: the default's top 4 would cover them too)
    assert {i for i, n in zip(index, names) if "lora_A" in n} == set(index)
    assert model.config.lora_layers == 0
    assert bench.fresh_model(m["joint"]).config.lora_layers == 4


def test_a_baselines_lora_placement_is_in_its_fingerprint(tmp_path, tiny_encoder_dir):
    """B1 and B3 name their flags (the top 4 layers): a row with another placement is another model."""
    from dataclasses import replace

    from xmeta.arguments import BenchmarkCommand
    from xmeta.evaluation.benchmark import Benchmark
    from xmeta.evaluation.benchmark_plan import plan_from

    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    bench = Benchmark(plan_from(BenchmarkCommand(task=str(card), methods="joint,target-only"), ("yo",)),
                      tmp_path / "b", str(card), str(tiny_encoder_dir))
    for name in ("joint", "target-only"):
        method = next(m for m in METHODS if m.name == name)
        assert method.encoder_flags == {"lora_layers": 4}
        every_layer = replace(method, encoder_flags={"lora_layers": 0})
        assert bench.model_fingerprint(every_layer) != bench.model_fingerprint(method)


def test_the_selection_cap_names_itself_only_where_it_binds(tmp_path, tiny_encoder_dir, monkeypatch):
    """A card whose dev languages (romanised copies included) fit in one selection round keeps the fingerprints
    cached before the cap; past the cap the model is another one."""
    from xmeta.arguments import BenchmarkCommand
    from xmeta.evaluation import benchmark_cache
    from xmeta.evaluation.benchmark import Benchmark
    from xmeta.evaluation.benchmark_plan import plan_from

    card = small_card(tmp_path, "emoji-a", "en, de, ru")  # ru: a romanised copy, 4 dev languages
    methods = {m.name: m for m in METHODS}
    bench = Benchmark(plan_from(BenchmarkCommand(task=str(card), methods="xmeta"), ("yo",)), tmp_path / "b",
                      str(card), str(tiny_encoder_dir))
    assert bench.copied_sources == 1
    uncapped = bench.model_fingerprint(methods["xmeta"])
    assert "adapt_selection_languages" not in bench.model_settings(methods["xmeta"])
    monkeypatch.setattr(benchmark_cache, "selection_round", lambda languages: min(languages, 3))
    assert bench.model_settings(methods["xmeta"])["adapt_selection_languages"] == benchmark_cache.SELECTION_LANGUAGES
    assert bench.model_fingerprint(methods["xmeta"]) != uncapped
    assert "adapt_selection_languages" not in bench.model_settings(methods["xmeta-romancopies"])  # 3 dev languages


def test_text_row_adapts_xmetas_model_centred_on_the_targets_text(tmp_path, tiny_encoder_dir):
    from xmeta.arguments import BenchmarkCommand
    from xmeta.evaluation.benchmark import Benchmark
    from xmeta.evaluation.benchmark_plan import plan_from

    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    methods = {m.name: m for m in METHODS}
    bench = Benchmark(plan_from(BenchmarkCommand(task=str(card), methods="xmeta,xmeta+text"), ("yo",)), tmp_path / "b",
                      str(card), str(tiny_encoder_dir))
    text, plain = methods["xmeta+text"], methods["xmeta"]
    assert bench.model_dir(text) == bench.model_dir(plain) and bench.train_record(text) == bench.train_record(plain)
    assert bench.cell_settings(text, "yo", 0, 0)["target_text"] == "train"  # always, whatever --target_text says
    assert bench.cell_settings(plain, "yo", 0, 0)["target_text"] == "none"
    assert bench.cell_fingerprint(text, "yo", 4, 0) != bench.cell_fingerprint(plain, "yo", 4, 0)
    assert bench.target_text_options(text, None, "yo") == {"target_text": bench.train["yo"].texts}


def test_text_rows_read_the_targets_texts_and_train_nothing_of_their_own(tmp_path, tiny_encoder_dir):
    """probe+text and xmeta+text on the tiny encoder: every cell records the text it read, xmeta+text adapts
    (K=0 too) the model xmeta trained, and the report names the rows that read the targets' texts."""
    out = tmp_path / "bench"
    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    assert main(["benchmark", "--quick", "--task", str(card), "--encoder", str(tiny_encoder_dir), "--out", str(out),
                 "--methods", "probe,probe+text,xmeta,xmeta+text"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    text_cells = [r for r in runs if r["method"].endswith("+text")]
    assert {r["method"] for r in text_cells} == {"probe+text", "xmeta+text"}
    assert all(r["target_text"] == "train" for r in text_cells)
    assert all(r["target_text"] == "none" for r in runs if not r["method"].endswith("+text"))
    assert any(r["method"] == "xmeta+text" and r["k"] == 0 and "adapt_seconds" in r for r in runs)  # adapted at K=0
    assert sorted(p.name.rsplit("-", 1)[0] for p in (out / "models").iterdir() if p.is_dir()) == ["xmeta"]
    assert "always read by `probe+text`, `xmeta+text`" in (out / "results.md").read_text()


def test_report_only_never_reports_a_stale_cell(tmp_path, tiny_encoder_dir, capsys):
    """A cell file whose fingerprint is not the current one is counted as stale and left out."""
    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    out = tmp_path / "bench"
    stale = out / "cache" / "probe" / "yo" / "k4-s0-000000000000.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"method": "probe", "lang": "yo", "k": 4, "seed": 0, "macro_f1": 1.0,
                                 "accuracy": 1.0, "fingerprint": "0" * 64}))
    (out / "cache" / "probe" / "yo" / "k4-s0.json").write_text(stale.read_text())  # a cell of an older xmeta
    results = quick(out, card, tiny_encoder_dir, "--methods", "probe", "--report_only")
    assert results["runs"] == [] and results["stale_cells"] == 2
    assert "2 cached under other settings (stale)" in capsys.readouterr().err


def test_quick_writes_to_its_own_folder(tmp_path, tiny_encoder_dir, monkeypatch):
    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    monkeypatch.chdir(tmp_path)
    assert main(["benchmark", "--quick", "--report_only", "--task", str(card), "--encoder", str(tiny_encoder_dir),
                 "--methods", "probe"]) == 0
    assert (tmp_path / "runs" / "benchmark-quick" / "results.json").is_file()
    assert not (tmp_path / "runs" / "benchmark").exists()


@pytest.mark.parametrize("encoder", ["tiny", pytest.param("embedded", marks=pytest.mark.real)])
def test_a_too_small_source_dev_split_fails_in_preflight(tmp_path, tiny_encoder_dir, capsys, encoder):
    """A card whose source dev split holds one example of a class: exit 2 within seconds, before any
    training, one line per problem naming language, split, label and count."""
    card = small_card(tmp_path, "emoji-thin-dev", "en, de, fr, es", dev_fraction=0.01)
    out = tmp_path / "bench"
    encoder = str(tiny_encoder_dir) if encoder == "tiny" else encoder
    start = time.perf_counter()
    assert main(["benchmark", "--quick", "--task", str(card), "--encoder", encoder, "--out", str(out)]) == 2
    assert time.perf_counter() - start < 60
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("xmeta benchmark: error: preflight found 12 problems (nothing was trained): ")
    assert "  language en (dev): label 'Smileys & Emotion' has 1 examples; adaptation tuning (K=4 shots + " \
           "held-out rows) needs 5" in lines
    assert sum("language en (dev): label '" in line for line in lines) == 8  # every label, not just the first
    assert sum("label(s) have >= 8 examples; dev episodes" in line for line in lines) == 4  # every source
    assert not out.exists()


def test_preflight_lists_every_problem():
    from xmeta.data import LabelMap, LanguageTask
    from xmeta.data.preflight import PreflightError, episode_problems, raise_problems, shot_problems

    labels = LabelMap(("a", "b", "c"))

    def task(lang: str, counts: dict[int, int]) -> LanguageTask:
        ids = [label for label, n in counts.items() for _ in range(n)]
        return LanguageTask(lang, [f"{lang} {i}" for i in range(len(ids))], ids, labels)

    train = {"en": task("en", {0: 8, 1: 8, 2: 8}), "de": task("de", {0: 8, 1: 3})}  # de: 3 of b, no c
    dev = {"en": task("en", {0: 2, 1: 2, 2: 2}), "de": task("de", {0: 8, 1: 8, 2: 8})}
    problems = episode_problems(train, dev, k_shot=4, k_query=4, n_way=0, meta_batch=3, dev_episodes=2)
    problems += shot_problems([task("yo", {0: 16, 1: 16, 2: 15})], "train", 16, "K=16 shots")
    assert problems == [
        "language de (train): label 'b' has 3 examples; episodes (k_shot 4 + k_query 4) needs 8",
        "language de (train): label 'c' has 0 examples; episodes (k_shot 4 + k_query 4) needs 8",
        "language en (dev): 0 label(s) have >= 8 examples; dev episodes (k_shot 4 + k_query 4) need 1",
        "--meta_batch 3 exceeds the 2 source languages",
        "language yo (train): label 'c' has 15 examples; K=16 shots needs 16",
    ]
    with pytest.raises(PreflightError) as err:
        raise_problems(problems)
    assert str(err.value).splitlines()[1:] == [f"  {line}" for line in problems[1:]]
    raise_problems([])  # nothing to say: no error


def test_fingerprints_are_canonical_and_follow_the_weights(tmp_path, tiny_encoder_dir):
    import shutil

    from xmeta.evaluation.fingerprint import fingerprint, weights_digest

    assert fingerprint({"a": 1, "b": [1, "x"]}) == fingerprint({"b": [1, "x"], "a": 1})
    assert fingerprint({"a": 1, "b": [1, "x"]}) != fingerprint({"a": 1, "b": ["x", 1]})
    copy = Path(shutil.copytree(tiny_encoder_dir, tmp_path / "enc"))
    assert weights_digest(str(copy)) == weights_digest(str(tiny_encoder_dir))
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert weights_digest(str(copy)) != weights_digest(str(tiny_encoder_dir))


def test_warm_start_row_spends_b1s_example_budget():
    """A warm-start row's joint stage plus meta-training pass as many examples as B1 at the same budget
    (less than one joint batch short), for any budget and episode shape."""
    from xmeta.meta.warm_start import JointWarmStart

    for shape in ({}, {"inner_steps": 5, "k_shot": 2, "k_query": 6}):
        plan = Plan(targets=["yo"], extra_targets=[], shots=[4], ablation_shots=[0, 4], seeds=[0],
                    methods=list(METHODS), meta_steps=40, budgets=[0.5, 1, 2, 4], **shape)
        for n_way in (3, 8):
            for budget in plan.budgets:
                b1 = plan.joint_steps(n_way, budget) * plan.joint_batch
                joint, meta = plan.warm_split(n_way, budget)
                warm = joint * JointWarmStart.batch_size + meta * plan.passes_per_meta_step(n_way)
                assert 0 <= b1 - warm < plan.joint_batch, (shape, n_way, budget)
                assert meta == plan.meta_steps_at(budget) // 2 and joint >= 1
    assert plan.joint_steps(8, 2) == 2 * plan.joint_steps(8) and plan.meta_steps_at(0.5) == 20


@pytest.mark.parametrize(("flags", "message"), [
    (["--budgets", "0,1"], "--budgets: multiples must be positive"),
    (["--budgets", "1,x"], "--budgets: expected comma-separated numbers"),
    (["--budgets", "1,1.01", "--meta_steps", "10"], "two budgets round to the same meta-steps"),
    (["--budgets", "0.01,1", "--meta_steps", "10", "--methods", "xmeta+warm"], "warm-start row gets 0 meta-steps"),
])
def test_bad_budgets_are_one_line_errors(tmp_path, tiny_encoder_dir, capsys, flags, message):
    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    argv = ["benchmark", "--task", str(card), "--encoder", str(tiny_encoder_dir), "--out", str(tmp_path / "b"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "b").exists()


def test_budgets_train_every_row_at_every_multiple(tmp_path, tiny_encoder_dir):
    """--budgets 0.5,1 on the tiny encoder: B1/B2 and each xmeta row trained twice (once per budget), the
    cells of each budget under their own fingerprint, K=0 and K=4 at both, budget.md/.png and the curve."""
    card = small_card(tmp_path, "emoji-a", "en, de, fr, es")
    out = tmp_path / "bench"
    methods = ("--methods", "joint-ft,xmeta+warm", "--budgets", "0.5,1")
    results = quick(out, card, tiny_encoder_dir, *methods)
    models = sorted(p.name.rsplit("-", 1)[0] for p in (out / "models").iterdir() if p.suffix != ".checkpoint")
    assert models == ["joint", "joint-0.5x", "xmeta+warm", "xmeta+warm@0.5x"]
    runs = {(r["method"], r["k"], r["seed"]): r for r in results["runs"]}
    for name in ("joint-ft", "xmeta+warm"):
        for k in (0, 4):
            half, full = runs[(f"{name}@0.5x", k, 0)], runs[(name, k, 0)]
            assert (half["budget"], full["budget"]) == (0.5, 1.0)
            assert half["fingerprint"] != full["fingerprint"] and half["model_fingerprint"] != full["model_fingerprint"]
    assert results["stale_cells"] == 0 and results["settings"]["budgets"] == [0.5, 1.0]

    passes = {}
    for record in (out / "cache").glob("*/train-*.json"):
        passes[record.parent.name] = json.loads(record.read_text())["example_passes"]
    for suffix, joint in (("", "joint"), ("@0.5x", "joint-0.5x")):  # equal budgets, the warm stage counted
        assert 0 <= passes[joint] - passes[f"xmeta+warm{suffix}"] < 32
    assert passes["joint"] == 2 * passes["joint-0.5x"]
    warm = json.loads(next((out / "cache" / "xmeta+warm").glob("train-*.json")).read_text())
    assert warm["joint_steps"] >= 1 and warm["flags"] == {"init": "joint"}

    curve = results["budget_curve"]
    assert set(curve) == {"0", "4"} and all(set(rows) == {"joint-ft", "xmeta+warm"} for rows in curve.values())
    assert all(set(points) == {"0.5", "1"} for rows in curve.values() for points in rows.values())
    assert curve["4"]["xmeta+warm"]["0.5"] == runs[("xmeta+warm@0.5x", 4, 0)]["macro_f1"]
    table = (out / "budget.md").read_text()
    assert "| method | ×0.5 | ×1 |" in table and table.count("| xmeta+warm |") == 2
    assert table in (out / "results.md").read_text() and (out / "budget.png").stat().st_size > 0

    served = cache_files(out)  # a rerun serves every budget's cells
    quick(out, card, tiny_encoder_dir, *methods)
    assert cache_files(out) == served


def test_update_readme_rewrites_the_tasks_own_section(tmp_path):
    from xmeta.evaluation.benchmark_report import update_readme

    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- benchmark:cldr-emoji:start -->\nold cldr\n<!-- benchmark:cldr-emoji:end -->\n"
                      "b\n<!-- benchmark:gnome-help:start -->\nold gnome\n<!-- benchmark:gnome-help:end -->\nc\n")
    update_readme(readme, "new gnome\n", "gnome-help")
    text = readme.read_text()
    assert "old cldr" in text and "old gnome" not in text and "new gnome\n<!-- benchmark:gnome-help:end -->" in text
    with pytest.raises(ArgumentError, match="benchmark:other:start"):
        update_readme(readme, "x\n", "other")


def test_report_only_card_keys_leave_the_fingerprints_alone(tmp_path):
    """`languages.report_separately` groups the report; every number stays cached when it changes."""
    from xmeta.data import load_task_card
    from xmeta.data.cards import _tasks_dir
    from xmeta.errors import TaskCardError
    from xmeta.evaluation.benchmark_cache import card_identity

    text = (_tasks_dir() / "cldr-emoji.yaml").read_text(encoding="utf-8")
    assert load_task_card("cldr-emoji").report_separately == ("chr",)
    without = tmp_path / "without.yaml"
    without.write_text("".join(line for line in text.splitlines(keepends=True) if "report_separately" not in line))
    assert card_identity(_tasks_dir() / "cldr-emoji.yaml") == card_identity(without) == without.read_text()
    stray = tmp_path / "stray.yaml"
    stray.write_text(text.replace("report_separately: [chr]", "report_separately: [de]"))
    with pytest.raises(TaskCardError, match="'de' in languages.report_separately is not a target"):
        load_task_card(str(stray))


def test_a_mean_over_fewer_seeds_than_the_plan_says_how_many():
    from types import SimpleNamespace

    from xmeta.evaluation.benchmark_plan import ALL_ROWS
    from xmeta.evaluation.benchmark_report import BenchmarkReport

    five = SimpleNamespace(plan=SimpleNamespace(seeds=[0, 1, 2, 3, 4]))
    assert BenchmarkReport.mean_text(five, (0.5211, 0.004, 5), 4) == "0.521 ± 0.004"
    assert BenchmarkReport.mean_text(five, (0.5211, 0.004, 3), 4) == "0.521 ± 0.004 (3 seeds)"
    assert BenchmarkReport.mean_text(five, (0.5211, 0.0, 1), 16) == "0.521 (1 seed)"
    assert BenchmarkReport.mean_text(five, (0.462, 0.0, 1), 0) == "0.462"  # K=0 is one deterministic run
    assert BenchmarkReport.mean_text(five, (0.516, 0.0, 1), ALL_ROWS) == "0.516"
    assert BenchmarkReport.mean_text(five, None, 4) == ""


def test_an_option_added_later_leaves_cached_fingerprints_alone_at_its_neutral_value():
    """`source_mixer` came after models were cached: "attention" is what they did, so it is left out; any other
    value (a different model) is in. `romanized_copies` became "on" by default later: the default is in, and the
    ablation that names "off" (in its flags too) is the model cached before the option existed."""
    plain = resolved_settings(EncoderArguments(), MetaTrainingArguments())
    assert "source_mixer" not in plain and plain["source_attention"] == "off" and plain["outer_lr"] > 0
    arrow = resolved_settings(EncoderArguments(source_attention="on", source_mixer="arrow"), MetaTrainingArguments())
    assert arrow["source_mixer"] == "arrow"
    later = {"adapter_generator", "generator_dim", "generator_lr", "min_k_shot", "routing_self"}
    assert not later & set(plain)  # they came later too
    assert plain["romanized_copies"] == "on" and "prototype_source_rows" not in plain  # 8: the models cached before it
    assert resolved_settings(EncoderArguments(prototype_source_rows=32), MetaTrainingArguments())["prototype_source_rows"] == 32
    assert plain["prototype_centre"] == "shrunk"  # a new default: a new model; "support" is the model cached before it
    assert "prototype_centre" not in resolved_settings(EncoderArguments(prototype_centre="support"), MetaTrainingArguments())
    assert plain["metric_selection"] == "dev"  # a new default: a new model; "fold" is the model cached before it
    assert "metric_selection" not in resolved_settings(EncoderArguments(metric_selection="fold"), MetaTrainingArguments())
    assert "romanized_copies" not in resolved_settings(EncoderArguments(), MetaTrainingArguments(romanized_copies="off"))
    assert without_neutral({"romanized_copies": "off", "meta_head": "on"}) == {"meta_head": "on"}
    assert resolved_settings(EncoderArguments(), MetaTrainingArguments(min_k_shot=1))["min_k_shot"] == 1
    generated = resolved_settings(EncoderArguments(adapter_generator="on"), MetaTrainingArguments(generator_lr=0.01))
    assert generated["adapter_generator"] == "on" and generated["generator_lr"] == 0.01


def test_speed_variants_pick_rungs_beside_the_default(tiny_encoder_dir, tmp_path):
    """``only``: the chosen rungs and xmeta's default, in ladder order; the generator's cost is its gain from xmeta."""
    from xmeta.evaluation.speed import speed_benchmark

    results = speed_benchmark(tmp_path / "s", steps=1, warmup=0, encoder=str(tiny_encoder_dir), max_length=32,
                              meta_batch=2, adapt_runs=1, only=("xmeta+generate",))
    assert list(results["variants"]) == ["xmeta", "xmeta+generate"]
    seconds = {n: r["median_seconds"] for n, r in results["variants"].items()}
    assert results["gains"] == {"xmeta -> xmeta+generate": pytest.approx(seconds["xmeta"] / seconds["xmeta+generate"])}
