"""Typological language vectors from URIEL, so that a language is described by more than its texts.

xmeta's language codes (CLDR/GNOME style: ``pt_BR``, ``zh_Hant``, ``sr@latin``, ``yue``) are mapped to ISO 639-3
with ``langcodes``; the vector joins URIEL's feature sets as ``lang2vec`` names them: ``syntax_knn``,
``phonology_knn`` and ``inventory_knn`` (WALS/SSWL/PHOIBLE/Ethnologue values, gaps imputed by k-NN), ``fam``
(membership of every node of the language's Glottolog lineage) and ``geo`` (proximity to 299 points on the
globe). A code URIEL lacks has no vector (``None``): the caller falls back to the task embedding.

The data are the ``.npz`` files inside the lang2vec 1.1.2 wheel, read with numpy in lang2vec's own layout
(``data[language, feature, source]``). lang2vec's code is not imported, not even its package: its module calls
``pkg_resources``, which setuptools >= 81 no longer ships, and re-reads a file on every ``get_features`` call
(~10 s); and the wheel also installs a script ``bin/lang2vec.py`` that shadows the package whenever a console
script (``xmeta``) runs, so the data folder is found through the distribution's metadata. Each file is read
once per process (1-3 s; the family table is 7,970 x 3,718) and each vector is cached.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass

import langcodes
import numpy as np
from langcodes.data_dicts import MACROLANGUAGES, NORMALIZED_MACROLANGUAGES

from ..errors import ArgumentError

# lang2vec's feature set → (file, feature-name prefix), as in its FEATURE_SETS_DICT.
FEATURE_SETS = {
    "syntax_knn": ("feature_predictions.npz", "S_"),
    "phonology_knn": ("feature_predictions.npz", "P_"),
    "inventory_knn": ("feature_predictions.npz", "INV_"),
    "fam": ("family_features.npz", ""),
    "geo": ("geocoord_features.npz", ""),
}
# A macrolanguage → its dominant member (ms → zsm, zh → cmn, ar → arb), whose URIEL entry is the better one.
_DOMINANT_MEMBER = {macro: member for member, macro in NORMALIZED_MACROLANGUAGES.items()}


@dataclass(frozen=True)
class TypologyWeights:
    """Share of each feature set in the cosine. Family dominates so that close relatives come first; geography
    and the typological sets order the rest (and rank the languages with no relative among the sources)."""

    fam: float = 0.5
    geo: float = 0.2
    syntax_knn: float = 0.1
    phonology_knn: float = 0.1
    inventory_knn: float = 0.1


class _UrielTables:
    """Every URIEL language's rows of the five feature sets, read once from the lang2vec wheel."""

    def __init__(self) -> None:
        folder = importlib.metadata.distribution("lang2vec").locate_file("lang2vec/data")
        self.rows: dict[str, dict[str, int]] = {}
        self.tables: dict[str, np.ndarray] = {}
        for name, (file, prefix) in FEATURE_SETS.items():
            with np.load(str(folder / file)) as archive:
                columns = np.flatnonzero(np.char.startswith(archive["feats"], prefix))
                data = archive["data"][:, :, 0]
                self.tables[name] = data[:, columns].astype(np.float32) if name != "fam" else data[:, columns] > 0
                self.rows[name] = {code: i for i, code in enumerate(archive["langs"].tolist())}
        # Imputed and geographic values are centred on the mean over all URIEL languages (what every language
        # shares says nothing about one); family memberships stay 0/1, so unrelated languages score 0 there.
        self.means = {name: table.mean(0) for name, table in self.tables.items() if name != "fam"}

    def features(self, iso: str) -> dict[str, np.ndarray]:
        """The raw values of ``iso``'s feature sets, as ``lang2vec.get_features`` returns them."""
        return {name: self.tables[name][self.rows[name][iso]].astype(np.float64) for name in FEATURE_SETS}

    def has(self, iso: str) -> bool:
        return all(iso in rows for rows in self.rows.values())

    def lineage_depth(self, iso: str) -> int:
        return int(self.tables["fam"][self.rows["fam"][iso]].sum())


@functools.cache
def uriel_tables() -> _UrielTables:
    return _UrielTables()


def _candidates(lang: str) -> list[str]:
    """ISO 639-3 codes that may stand for ``lang``: a macrolanguage's dominant member, the code itself, then the
    macrolanguage it belongs to (nn → nor: URIEL gives nno no lineage)."""
    try:
        language = langcodes.Language.get(lang.split("@")[0])  # "sr@latin": a glibc modifier, not another language
    except ValueError:  # not a language tag at all ("C", "../x")
        return []
    code = language.language
    if not code:
        return []
    found = [_DOMINANT_MEMBER[code]] if code in _DOMINANT_MEMBER else []
    for tag in filter(None, (code, MACROLANGUAGES.get(code))):
        try:
            found.append(langcodes.Language.get(tag).to_alpha3())
        except LookupError:  # a well-formed tag that no standard assigns ("xx")
            pass
    return list(dict.fromkeys(found))


@functools.cache
def uriel_code(lang: str) -> str | None:
    """The ISO 639-3 code under which URIEL describes xmeta language ``lang`` (``None``: URIEL lacks it). Of the
    candidates, the first that URIEL places in a family, else the first URIEL has at all."""
    tables = uriel_tables()
    known = [iso for iso in _candidates(lang) if tables.has(iso)]
    return next((iso for iso in known if tables.lineage_depth(iso) > 0), known[0] if known else None)


@functools.cache
def typology_vector(lang: str, weights: TypologyWeights = TypologyWeights()) -> np.ndarray | None:
    """Unit-length concatenation of the feature sets, each scaled to unit length times √weight, so that a dot
    product is the weighted mean of the per-set cosines (exactly so when no set is all zero, as the family set is
    for a language URIEL places in no family). ``None`` when URIEL lacks ``lang``. Cached, hence read-only."""
    iso = uriel_code(lang)
    if iso is None:
        return None
    tables = uriel_tables()
    parts = []
    for name, values in tables.features(iso).items():
        values = values - tables.means[name] if name in tables.means else values
        norm = np.linalg.norm(values)
        parts.append(np.sqrt(getattr(weights, name)) * (values / norm if norm > 0 else values))
    vector = np.concatenate(parts)
    vector /= np.linalg.norm(vector)  # never zero: the geographic set is non-zero for every URIEL language
    vector.setflags(write=False)
    return vector


def language_similarity(langs_a: Sequence[str], langs_b: Sequence[str],
                        weights: TypologyWeights = TypologyWeights()) -> np.ndarray:
    """Typological cosine of every language in ``langs_a`` to every one in ``langs_b`` (NaN where URIEL lacks
    either)."""
    def matrix(langs):
        vectors = [typology_vector(lang, weights) for lang in langs]
        width = next((len(v) for v in vectors if v is not None), 1)
        return np.stack([v if v is not None else np.full(width, np.nan) for v in vectors]) if vectors \
            else np.zeros((0, width))

    a, b = matrix(langs_a), matrix(langs_b)
    if a.shape[1] != b.shape[1]:  # one side knows no language at all
        return np.full((len(langs_a), len(langs_b)), np.nan)
    return a @ b.T


def routing_prior(target: str, sources: Sequence[str], temperature: float = 0.1,
                  weights: TypologyWeights = TypologyWeights()) -> np.ndarray | None:
    """How much ``target`` should draw on each source: softmax of the typological similarity / ``temperature``.
    A source URIEL lacks gets the mean similarity of the others (neither favoured nor shunned); ``None`` when
    URIEL lacks the target or every source (no prior: the task embedding alone decides)."""
    if temperature <= 0:
        raise ArgumentError(f"routing prior: temperature must be a positive number (got {temperature})")
    similarity = language_similarity([target], sources, weights)[0]
    known = ~np.isnan(similarity)
    if not known.any():
        return None
    similarity = np.where(known, similarity, similarity[known].mean())
    logits = similarity / temperature
    prior = np.exp(logits - logits.max())
    return prior / prior.sum()
