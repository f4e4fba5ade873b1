"""Data stage: task cards, CLDR reading and splits, label maps, episodes, encoding."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xmeta.data import (
    CldrSource,
    EpisodeSampler,
    LabelMap,
    LanguageTask,
    assign_item_splits,
    available_locales,
    available_tasks,
    encode_texts,
    load_language_tasks,
    load_task_card,
    sample_k_shot,
)
from xmeta.data.cldr import DEFAULT_ANNOTATIONS_DIR, DEFAULT_EMOJI_TEST
from xmeta.errors import ArgumentError, DataError, TaskCardError

SOURCES = "en de fr es it pt nl pl ru uk tr ar fa hi bn zh ja ko vi id".split()
TARGETS = "qu mi wo yo ig zu ha xh am so chr".split()
GROUPS = ["Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
          "Travel & Places", "Activities", "Objects", "Symbols"]
HAVE_CLDR = DEFAULT_ANNOTATIONS_DIR.is_dir() and DEFAULT_EMOJI_TEST.is_file()
needs_cldr = pytest.mark.skipif(not HAVE_CLDR, reason="Debian unicode-cldr-core / unicode-data not installed")

EMOJI_TEST = """# group: Smileys & Emotion
1F600 ; fully-qualified # 😀 grinning face
263A FE0F ; fully-qualified # ☺️ smiling face
# group: Animals & Nature
1F431 ; fully-qualified # 🐱 cat face
1F436 ; fully-qualified # 🐶 dog face
# group: Flags
1F3C1 ; fully-qualified # 🏁 chequered flag
"""


def _locale_xml(entries: dict[str, tuple[str, str]]) -> str:
    body = "".join(
        f'<annotation cp="{cp}">{kw}</annotation><annotation cp="{cp}" type="tts">{tts}</annotation>'
        for cp, (tts, kw) in entries.items()
    )
    return f"<ldml><annotations>{body}</annotations></ldml>"


@pytest.fixture()
def tiny_card(tmp_path: Path):
    """A card over a hand-made CLDR folder: 4 labelled emoji, a flag, an inherited value."""
    ann = tmp_path / "annotations"
    ann.mkdir()
    names = {"😀": ("grin", "face | grin"), "☺": ("smile", "face | smile"), "🐱": ("cat", "cat | pet"),
             "🐶": ("dog", "dog | pet"), "🏁": ("flag", "flag | race")}
    (ann / "en.xml").write_text(_locale_xml(names), encoding="utf-8")
    (ann / "xx.xml").write_text(_locale_xml({**names, "🐶": ("↑↑↑", "↑↑↑")}), encoding="utf-8")
    (tmp_path / "emoji-test.txt").write_text(EMOJI_TEST, encoding="utf-8")
    card = load_task_card("cldr-emoji")
    return card.with_source_options(annotations_dir=ann, emoji_test=tmp_path / "emoji-test.txt")


# --- task cards ----------------------------------------------------------------------

def test_card_defaults_are_exact() -> None:
    assert "cldr-emoji" in available_tasks()
    card = load_task_card("cldr-emoji")
    assert card.kind == "sequence-classification" and card.source_type == "cldr-annotations"
    assert list(card.sources) == SOURCES
    assert list(card.targets) == TARGETS
    assert "kl" in card.excluded and list(card.labels) == GROUPS
    assert card.text_fields == ("tts", "keywords") and card.text_separator == " | "
    assert load_task_card(card.path) == card


def test_unknown_task_lists_available() -> None:
    with pytest.raises(TaskCardError, match="unknown task 'nope'.*cldr-emoji"):
        load_task_card("nope")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("kind: sequence-classification\n", ""), r"missing key 'kind'"),
        (lambda t: t.replace("  seed: 0", "  seed: zero"), r"key 'split.seed' must be a int"),
        (lambda t: t.replace("  seed: 0", "  sed: 0"), r"unknown key 'split.sed'"),
        (lambda t: t.replace("sources: [en,", "sources: [no,"), r"'languages.sources' has False.*quote"),
        (lambda t: t.replace("targets: [qu,", "targets: [en,"), r"language 'en' is in both"),
        (lambda t: t.replace("labels:\n", "labels: [\n"), r":\d+:\d+: malformed YAML"),
    ],
)
def test_bad_card_names_file_and_key(tmp_path: Path, edit, message: str) -> None:
    good = load_task_card("cldr-emoji").path.read_text(encoding="utf-8")
    path = tmp_path / "bad.yaml"
    path.write_text(edit(good), encoding="utf-8")
    with pytest.raises(TaskCardError, match=message) as err:
        load_task_card(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unknown_source_option(tiny_card) -> None:
    with pytest.raises(TaskCardError, match="unknown source option 'annotation_dir'"):
        tiny_card.with_source_options(annotation_dir="/x")


# --- CLDR on hand-made files -----------------------------------------------------------

def test_cldr_rows_skip_flags_and_inherited(tiny_card) -> None:
    source = CldrSource.from_card(tiny_card)
    rows = source.read(["en", "xx"]).to_list()
    en = [r for r in rows if r["lang"] == "en"]
    assert {r["item_id"] for r in en} == {"😀", "☺", "🐱", "🐶"}  # FE0F stripped, flag dropped
    assert {r["text"] for r in en} >= {"grin | face | grin", "cat | cat | pet"}
    assert {r["item_id"] for r in rows if r["lang"] == "xx"} == {"😀", "☺", "🐱"}
    assert {r["label"] for r in rows} == {"Smileys & Emotion", "Animals & Nature"}


def test_unknown_and_excluded_locales(tiny_card) -> None:
    source = CldrSource.from_card(tiny_card)
    with pytest.raises(DataError, match=r"unknown CLDR locale 'enn'.*enn\.xml.*close: en"):
        source.read(["enn"])
    with pytest.raises(DataError, match="'kl' is excluded.*Danish"):
        source.read(["kl"])
    assert available_locales(source.annotations_dir) == ["en", "xx"]


def test_split_by_item_is_seeded_and_stratified() -> None:
    items = {f"i{n}": ("a" if n % 3 else "b") for n in range(300)}
    first = assign_item_splits(items, seed=1, test_fraction=0.4, dev_fraction=0.15)
    assert first == assign_item_splits(dict(reversed(items.items())), 1, 0.4, 0.15)
    assert first != assign_item_splits(items, 2, 0.4, 0.15)
    for label, total in Counter(items.values()).items():
        counts = Counter(first[i] for i, lab in items.items() if lab == label)
        assert counts["test"] == round(total * 0.4)
        assert counts["dev"] == round((total - counts["test"]) * 0.15)


# --- CLDR on the installed files -----------------------------------------------------------

@needs_cldr
def test_real_cldr_split_never_leaks_an_emoji() -> None:
    card = load_task_card("cldr-emoji")
    langs = ["en", "ja", "ar", "yo", "chr"]
    splits = {s: load_language_tasks(card, langs, s) for s in ("train", "dev", "test")}
    items = {s: {i for t in tasks.values() for i in t.item_ids} for s, tasks in splits.items()}
    assert not items["train"] & items["test"] and not items["dev"] & items["test"]
    assert not items["train"] & items["dev"]
    for lang in langs:
        assert len(splits["train"][lang].label_map) == 8
        assert len(splits["train"][lang].by_label()) == 8  # every group present in every split
    en_total = sum(len(splits[s]["en"]) for s in splits)
    assert 0.38 <= len(splits["test"]["en"]) / en_total <= 0.42


@needs_cldr
def test_real_cldr_row_counts() -> None:
    source = CldrSource.from_card(load_task_card("cldr-emoji"))
    counts = Counter(source.read(SOURCES + TARGETS)["lang"])
    assert set(counts) == set(SOURCES + TARGETS)
    assert all(1250 <= n <= 1524 for n in counts.values()), counts
    assert set(source.read(["en"])["label"]) == set(GROUPS)


# --- LabelMap / LanguageTask ----------------------------------------------------------------

def test_label_map_unseen_label_names_it() -> None:
    labels = LabelMap(("neg", "pos"))
    assert labels.encode(["pos", "neg"], "x") == [1, 0] and labels.id2label == {0: "neg", 1: "pos"}
    with pytest.raises(DataError, match=r"yo\.jsonl, language yo: unseen label 'neutral'.*neg, pos"):
        labels.encode(["pos", "neutral"], "yo.jsonl, language yo")


def _task(per_label: dict[int, int], lang: str = "xx", n_labels: int = 5) -> LanguageTask:
    labels = [label for label, n in per_label.items() for _ in range(n)]
    texts = [f"{lang}-{label}-{i}" for i, label in enumerate(labels)]
    return LanguageTask(lang, texts, labels, LabelMap(tuple(f"c{i}" for i in range(n_labels))))


# --- sampler -----------------------------------------------------------------------------

def _sampler(seed: int = 0, **kw) -> EpisodeSampler:
    tasks = {"aa": _task({0: 10, 1: 10, 2: 10, 3: 3}, "aa"), "bb": _task({0: 8, 2: 8, 4: 30}, "bb")}
    args = {"n_way": 2, "k_shot": 2, "k_query": 3, "seed": seed} | kw
    return EpisodeSampler(tasks, **args)


def test_episode_is_stratified_disjoint_and_global() -> None:
    sampler = _sampler()
    for _ in range(30):
        ep = sampler.sample()
        support, query = Counter(ep.support_labels), Counter(ep.query_labels)
        assert set(support) == set(query) and len(support) == 2
        assert set(support.values()) == {2} and set(query.values()) == {3}
        assert not set(ep.support_texts) & set(ep.query_texts)
        assert all(t.startswith(ep.lang) for t in ep.support_texts + ep.query_texts)
        assert 3 not in support  # 3 examples < k_shot + k_query: never eligible
        assert all(t.split("-")[1] == str(label) for t, label in zip(ep.query_texts, ep.query_labels))


def test_n_way_all_uses_every_eligible_label() -> None:
    sampler = _sampler(n_way="all")
    for _ in range(10):
        ep = sampler.sample()
        assert set(ep.support_labels) == ({0, 1, 2} if ep.lang == "aa" else {0, 2, 4})


def test_sampler_reproducible_and_state_round_trip() -> None:
    a, b = _sampler(seed=7), _sampler(seed=7)
    assert [a.sample() for _ in range(5)] == [b.sample() for _ in range(5)]
    state = json.loads(json.dumps(a.state_dict()))  # checkpoints may store it as JSON
    expected = [a.sample_meta_batch(2) for _ in range(3)]
    c = _sampler(seed=99)
    c.load_state_dict(state)
    assert [c.sample_meta_batch(2) for _ in range(3)] == expected


def test_variable_shot_episodes_draw_every_support_size_and_resume_exactly() -> None:
    """``min_k_shot``: each episode is stratified at its own size in min_k_shot..k_shot; the query keeps k_query."""
    sampler = _sampler(n_way="all", k_shot=4, k_query=3, min_k_shot=1, seed=3)
    sizes = Counter()
    for _ in range(60):
        ep = sampler.sample()
        support = Counter(ep.support_labels)
        assert len(set(support.values())) == 1 and set(Counter(ep.query_labels).values()) == {3}
        assert not set(ep.support_texts) & set(ep.query_texts)
        sizes[next(iter(support.values()))] += 1
    assert set(sizes) == {1, 2, 3, 4}
    state = sampler.state_dict()
    expected = [sampler.sample() for _ in range(5)]
    again = _sampler(n_way="all", k_shot=4, k_query=3, min_k_shot=1, seed=0)
    again.load_state_dict(state)
    assert [again.sample() for _ in range(5)] == expected
    # a range of one size is the fixed shape: the same episodes as without the option
    assert _sampler(min_k_shot=2, seed=5).sample() == _sampler(seed=5).sample()
    with pytest.raises(ArgumentError, match="min_k_shot must be between 0 and k_shot=2 \\(got 3\\)"):
        _sampler(min_k_shot=3)


def test_meta_batch_languages_distinct_and_size_sampling() -> None:
    sampler = _sampler(language_sampling="size", temperature=1.0)
    for _ in range(10):
        assert sorted(ep.lang for ep in sampler.sample_meta_batch(2)) == ["aa", "bb"]
    with pytest.raises(ArgumentError, match="3 languages, but only 2"):
        sampler.sample_meta_batch(3)
    picked = Counter(sampler.sample().lang for _ in range(400))
    assert picked["bb"] > picked["aa"]  # 46 vs 33 rows
    flat = _sampler(language_sampling="size", temperature=1e6)
    assert flat.language_probs == pytest.approx([0.5, 0.5], abs=1e-3)


def test_sampler_refuses_language_with_too_few_labels() -> None:
    with pytest.raises(DataError, match=r"language bb: only 1 label\(s\) have >= 9 examples.*need 3.*c4=30"):
        _sampler(n_way=3, k_shot=4, k_query=5)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.integers(0, 4), st.integers(3, 12), min_size=1), st.integers(1, 3), st.integers(0, 99))
def test_sample_k_shot_property(per_label: dict[int, int], k: int, seed: int) -> None:
    task = _task(per_label)
    chosen = sample_k_shot(task, k, seed)
    assert chosen == sample_k_shot(task, k, seed) and len(set(chosen)) == len(chosen)
    assert Counter(task.labels[i] for i in chosen) == {label: k for label in per_label}


def test_sample_k_shot_too_few_names_class() -> None:
    with pytest.raises(DataError, match="language yo: label 'c1' has 2 examples, fewer than k=4"):
        sample_k_shot(_task({0: 9, 1: 2}, "yo"), 4, 0)


# --- encoding ------------------------------------------------------------------------------

def test_encode_texts_pads_dynamically() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "query:": 2, "a": 3, "b": 4}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]")
    batch = encode_texts(tokenizer, ["a", "a b a"], prefix="query: ", max_length=64)
    assert batch["input_ids"].shape == (2, 4)  # longest text + prefix, not 64
    assert batch["input_ids"][0].tolist() == [2, 3, 0, 0]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert encode_texts(tokenizer, ["a b a b a"], "query: ", max_length=3)["input_ids"].shape == (1, 3)
    assert isinstance(batch["input_ids"], torch.Tensor)
