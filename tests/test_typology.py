"""Typological language representations (URIEL via the lang2vec wheel): code mapping, fallback, close pairs,
and `xmeta explain` showing each source's similarity next to its attention mass."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from xmeta.data import load_task_card
from xmeta.data.cldr import available_locales
from xmeta.data.gnome_help import available_languages
from xmeta.data.typology import (
    FEATURE_SETS,
    TypologyWeights,
    language_similarity,
    routing_prior,
    typology_vector,
    uriel_code,
    uriel_tables,
)
from xmeta.errors import ArgumentError

# Close pairs from CLDR (issue #14): each target's relatives among the cldr-emoji card's default sources.
CLOSE_PAIRS = {"yue": ["zh"], "ms": ["id"], "gl": ["pt", "es"], "be": ["ru", "uk"]}


def test_codes_of_the_cards_and_their_data_all_map():
    """Every language code of the two shipped cards and of the data they read (CLDR's 146 annotation locales,
    GNOME help's 41 translations) reaches URIEL: regions, scripts and ``@latin`` do not change the language."""
    cards = [load_task_card(name) for name in ("cldr-emoji", "gnome-help")]
    card_codes = sorted({lang for card in cards for lang in (*card.sources, *card.targets, *card.excluded)})
    data_codes = {"cldr": available_locales(), "gnome": available_languages()}
    unmapped = {name: [c for c in codes if uriel_code(c) is None] for name, codes in
                {"cards": card_codes, **data_codes}.items()}
    assert unmapped == {"cards": [], "cldr": [], "gnome": []}
    assert len(data_codes["cldr"]) >= 140 and len(data_codes["gnome"]) >= 40


@pytest.mark.parametrize("code, iso", [
    ("pt_BR", "por"), ("pt_PT", "por"), ("zh_Hant", "cmn"), ("zh_CN", "cmn"), ("sr_Latn", "srp"), ("sr@latin", "srp"),
    ("yue", "yue"), ("yue_Hans", "yue"), ("id", "ind"), ("en_001", "eng"), ("es_419", "spa"),
    # macrolanguages: the dominant member when URIEL places it in a family, else the macrolanguage itself
    ("ms", "zsm"), ("zh", "cmn"), ("ar", "arb"), ("fa", "pes"), ("sw", "swh"), ("qu", "quz"),
    ("et", "est"), ("lv", "lav"), ("no", "nor"), ("nn", "nor"),
])
def test_code_mapping(code, iso):
    assert uriel_code(code) == iso


@pytest.mark.parametrize("code", ["xx", "C", "tok", "../yo", ""])
def test_a_language_uriel_lacks_has_no_vector_and_no_prior(code):
    """Not a tag ("C", GNOME's English source; "../yo"), an unassigned one ("xx"), or a real ISO 639-3 code
    URIEL does not know (Toki Pona, coded 2022): no vector, NaN similarity, no prior; the task embedding decides."""
    assert uriel_code(code) is None and typology_vector(code) is None
    assert np.isnan(language_similarity([code], ["pt", "es"])).all()
    assert routing_prior(code, ["pt", "es"]) is None


def test_similarity_is_a_cosine_and_the_prior_a_distribution():
    vectors = [typology_vector(lang) for lang in ("gl", "pt", "ja")]
    assert all(abs(np.linalg.norm(v) - 1) < 1e-9 for v in vectors)
    sim = language_similarity(["gl", "pt", "ja"], ["gl", "pt", "ja", "xx"])
    assert np.allclose(np.diag(sim[:, :3]), 1) and np.allclose(sim[:, :3], sim[:, :3].T)
    assert np.isnan(sim[:, 3]).all() and language_similarity([], ["pt"]).shape == (0, 1)
    prior = routing_prior("gl", ["pt", "xx", "ja"])
    assert abs(prior.sum() - 1) < 1e-9 and prior[0] > prior[1] > prior[2]  # xx: the mean of the known similarities
    sharper = routing_prior("gl", ["pt", "ja"], temperature=0.02)
    assert sharper[0] > routing_prior("gl", ["pt", "ja"])[0]
    with pytest.raises(ArgumentError, match="temperature"):
        routing_prior("gl", ["pt"], temperature=0)


def test_family_weight_decides_between_a_relative_and_a_neighbour():
    """With family features alone, Belarusian's closest source is an East Slavic one; with geography alone it is
    Polish (its western neighbour) — the default weights keep the relatives first."""
    only = {name: TypologyWeights(**{n: float(n == name) for n in FEATURE_SETS}) for name in ("fam", "geo")}
    sources = ["pl", "ru", "uk", "de"]
    closest = {name: sources[int(np.argmax(language_similarity(["be"], sources, w)[0]))] for name, w in only.items()}
    assert closest["fam"] in ("ru", "uk") and closest["geo"] == "pl"
    assert sources[int(np.argmax(language_similarity(["be"], sources)[0]))] in ("ru", "uk")


def test_close_pairs_come_first_among_the_card_sources():
    """On the representation itself: for yue, ms, gl and be (kept out of the card's default training) the most
    similar of the cldr-emoji card's default sources is their relative, and the routing prior puts most of its
    mass on the relatives."""
    card = load_task_card("cldr-emoji")
    sources = list(card.sources)
    assert not set(CLOSE_PAIRS) & set(sources)
    assert {rel for rels in CLOSE_PAIRS.values() for rel in rels} <= set(sources)
    sim = language_similarity(list(CLOSE_PAIRS), sources)
    for row, (target, relatives) in zip(sim, CLOSE_PAIRS.items()):
        top3 = [(sources[i], round(float(row[i]), 3)) for i in np.argsort(-row)[:3]]
        assert top3[0][0] in relatives, f"{target}: top-3 {top3}, expected {relatives} first"
        prior = routing_prior(target, sources)
        assert sum(prior[sources.index(r)] for r in relatives) > 0.5, f"{target}: prior {prior.round(3)}"


def test_tables_load_where_the_lang2vec_script_shadows_the_package(tmp_path, monkeypatch):
    """The lang2vec wheel puts a script ``bin/lang2vec.py`` (it imports ``pkg_resources``) beside the ``xmeta``
    console script, whose folder comes first on ``sys.path``: the data must be found without importing it."""
    (tmp_path / "lang2vec.py").write_text("raise ImportError('the bin/lang2vec.py script, not the package')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "lang2vec" or m.startswith("lang2vec.")]:
        monkeypatch.delitem(sys.modules, name)
    uriel_tables.cache_clear()
    try:
        assert uriel_tables().features("glg")["fam"].sum() == 11  # Galician's Glottolog lineage: 11 nodes
    finally:
        uriel_tables.cache_clear()


@pytest.mark.real
def test_vectors_hold_what_lang2vec_get_features_returns(monkeypatch):
    """The wheel's data read here equal lang2vec's own ``get_features`` (run with a ``pkg_resources`` stand-in
    when setuptools no longer ships it: lang2vec only asks it for its data folder)."""
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda module, path: str(Path(importlib.util.find_spec(module).origin).parent / path)
        monkeypatch.setitem(sys.modules, "pkg_resources", shim)
    monkeypatch.delitem(sys.modules, "lang2vec.lang2vec", raising=False)
    from lang2vec.lang2vec import get_features

    codes = ["glg", "yue", "zsm"]
    theirs = get_features(codes, "+".join(FEATURE_SETS))
    for iso in codes:
        ours = np.concatenate(list(uriel_tables().features(iso).values()))
        np.testing.assert_array_equal(ours, np.array(theirs[iso], dtype=float))


def _meta_train(main, out: Path, *args: str) -> None:
    assert main(["meta-train", "--out", str(out), "--steps", "1", "--meta_batch", "2", "--k_shot", "2", "--k_query", "2",
                 "--lora_r", "2", "--lora_layers", "1", "--source_attention", "on", "--adapt_steps", "1", *args]) == 0


def test_explain_shows_typology_and_says_when_uriel_lacks_a_language(tmp_path, tiny_encoder_dir, toy_jsonl, capsys):
    from xmeta.cli import main

    train = toy_jsonl(["pt", "ru", "qq"], per_class=8, name="train.jsonl")
    _meta_train(main, tmp_path / "m", "--train_file", str(train), "--encoder", str(tiny_encoder_dir))
    texts = tmp_path / "t.txt"
    texts.write_text("cat dog\nrice soup\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["explain", "--model", str(tmp_path / "m"), "--lang", "gl", "--file", str(texts),
                 "--out", str(tmp_path / "gl")]) == 0
    table = capsys.readouterr().out
    assert "| typological similarity | typology prior |" in table
    assert "| qq |" in table and "no URIEL entry: task embedding only" in table.split("| qq |")[1].splitlines()[0]
    profile = json.loads((tmp_path / "gl" / "explain.json").read_text())
    sim = dict(zip(profile["sources"], profile["typology"]))
    assert sim["qq"] is None and sim["pt"] > sim["ru"]
    assert profile["uriel"] == {"gl": "glg", "pt": "por", "ru": "rus", "qq": None}
    assert abs(sum(profile["prior"]) - 1) < 1e-9
    assert main(["explain", "--model", str(tmp_path / "m"), "--lang", "zz", "--file", str(texts)]) == 0
    table = capsys.readouterr().out
    assert "`zz`: no URIEL entry: task embedding only" in table and "| pt |" in table


@pytest.mark.real
def test_explain_on_the_real_encoder_shows_the_similarity_column(tmp_path, capsys):
    """One real meta-step over Portuguese, Spanish, Russian and Chinese with source attention; `explain gl`
    (Galician, never trained on) lists every source with its URIEL similarity, Portuguese and Spanish first; the
    default romanised copies ru-Latn and zh-Latn are sources too, typed as their language."""
    from xmeta.cli import main

    _meta_train(main, tmp_path / "m", "--task", "cldr-emoji", "--sources", "pt,es,ru,zh", "--eval_every", "0")
    capsys.readouterr()
    assert main(["explain", "--model", str(tmp_path / "m"), "--lang", "gl", "--max_texts", "16",
                 "--out", str(tmp_path / "gl")]) == 0
    table = capsys.readouterr().out
    assert "| source | attention mass | task-embedding cosine | typological similarity | typology prior |" in table
    profile = json.loads((tmp_path / "gl" / "explain.json").read_text())
    assert profile["texts"] == 16 and sorted(profile["sources"]) == ["es", "pt", "ru", "ru-Latn", "zh", "zh-Latn"]
    sim = dict(zip(profile["sources"], profile["typology"]))
    assert min(sim["pt"], sim["es"]) > max(sim["ru"], sim["zh"])
    assert (sim["ru-Latn"], sim["zh-Latn"]) == pytest.approx((sim["ru"], sim["zh"]))
    assert all(f"| {lang} |" in table for lang in profile["sources"])
    assert (tmp_path / "gl" / "source_attention.png").stat().st_size > 0
