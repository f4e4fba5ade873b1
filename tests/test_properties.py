"""Property-based tests: any file either loads or raises XMetaError; episodes are always stratified
with disjoint support and query."""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmeta.data import EpisodeSampler, LabelMap, LanguageTask, read_file, tasks_from_dataset
from xmeta.errors import XMetaError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
cell = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.booleans(), st.floats(allow_nan=True))
row = st.dictionaries(st.sampled_from(["text", "label", "lang", "item_id", "other"]), cell, max_size=5)


def loads_or_refuses(path) -> None:
    try:
        dataset = read_file(path)
    except XMetaError as err:
        assert "\n" not in str(err)
        return
    assert {"text", "label", "lang"} <= set(dataset.column_names)
    assert all(isinstance(t, str) and t.strip() for t in dataset["text"])
    tasks_from_dataset(dataset)


@FAST
@given(rows=st.lists(st.one_of(row, cell), max_size=6), garbage=st.binary(max_size=12), where=st.integers(0, 6))
def test_any_jsonl_loads_or_raises_xmeta_error(tmp_path, rows, garbage, where):
    lines = [json.dumps(r).encode() for r in rows]
    lines.insert(min(where, len(lines)), garbage)
    path = tmp_path / "gen.jsonl"
    path.write_bytes(b"\n".join(lines))
    loads_or_refuses(path)


@FAST
@given(header=st.lists(st.sampled_from(["text", "label", "lang", "x", ""]), max_size=4),
       body=st.lists(st.lists(st.text(alphabet="ab,\t\"\n é", max_size=6), max_size=4), max_size=5),
       suffix=st.sampled_from([".csv", ".tsv"]))
def test_any_delimited_file_loads_or_raises_xmeta_error(tmp_path, header, body, suffix):
    sep = "," if suffix == ".csv" else "\t"
    path = tmp_path / f"gen{suffix}"
    path.write_text("\n".join(sep.join(cells) for cells in [header, *body]), encoding="utf-8")
    loads_or_refuses(path)


@st.composite
def language_tasks(draw) -> dict[str, LanguageTask]:
    names = ("a", "b", "c", "d")
    label_map = LabelMap(names)
    tasks = {}
    for lang in draw(st.lists(st.sampled_from(["xx", "yy", "zz"]), min_size=1, max_size=3, unique=True)):
        counts = draw(st.lists(st.integers(0, 9), min_size=4, max_size=4))
        labels = [label for label, n in enumerate(counts) for _ in range(n)]
        tasks[lang] = LanguageTask(lang, [f"{lang}-{i}" for i in range(len(labels))], labels, label_map)
    return tasks


@settings(max_examples=80, deadline=None)
@given(tasks=language_tasks(), n_way=st.one_of(st.none(), st.integers(1, 4)), k_shot=st.integers(1, 4),
       k_query=st.integers(1, 4), seed=st.integers(0, 2**32 - 1), meta_batch=st.integers(1, 3))
def test_episodes_are_stratified_and_disjoint(tasks, n_way, k_shot, k_query, seed, meta_batch):
    try:
        sampler = EpisodeSampler(tasks, n_way, k_shot, k_query, seed=seed)
        episodes = sampler.sample_meta_batch(meta_batch)
    except XMetaError:
        return
    assert len({e.lang for e in episodes}) == len(episodes) == meta_batch
    for episode in episodes:
        support, query = Counter(episode.support_labels), Counter(episode.query_labels)
        assert set(support) == set(query)
        assert n_way is None or len(support) == n_way
        assert set(support.values()) == {k_shot} and set(query.values()) == {k_query}
        assert not set(episode.support_texts) & set(episode.query_texts)
        task = tasks[episode.lang]
        truth = dict(zip(task.texts, task.labels))
        assert all(truth[t] == y for t, y in zip(episode.support_texts + episode.query_texts,
                                                  episode.support_labels + episode.query_labels))
