"""The tagging path on the embedded multilingual-e5-small: a CoNLL file written here, a few
meta-steps, adapt, seqeval scores, save/load and export to plain transformers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

from xmeta import XMetaForTokenClassification
from xmeta.data import SentenceEpisodeSampler, read_tagged_file, tagging_tasks_from_dataset
from xmeta.meta import MetaTrainer, MetaTrainingArguments

pytestmark = pytest.mark.real

SENTENCES = {
    "de": ["Angela Merkel besuchte Paris", "Die Siemens AG baut in Berlin", "Thomas Müller spielt für Bayern München",
           "Der Rhein fließt durch Köln", "Volkswagen verkauft Autos in China", "Maria wohnt in Hamburg"],
    "fr": ["Emmanuel Macron a visité Berlin", "Renault construit à Lyon", "Marie Curie est née à Varsovie",
           "La Seine traverse Paris", "Airbus travaille avec Toulouse", "Jean habite à Marseille"],
    "es": ["Pedro Sánchez viajó a Roma", "Telefónica abre en Madrid", "Lionel Messi juega en Barcelona",
           "El Ebro pasa por Zaragoza", "Iberia vuela a Lima", "Ana vive en Sevilla"],
    "it": ["Giorgia Meloni è andata a Londra", "La Fiat produce a Torino", "Luca lavora per Ferrari a Maranello",
           "Il Tevere attraversa Roma", "Eni investe in Libia", "Sofia abita a Napoli"],
}
ENTITIES = {"Angela": "B-PER", "Merkel": "I-PER", "Thomas": "B-PER", "Müller": "I-PER", "Maria": "B-PER",
            "Emmanuel": "B-PER", "Macron": "I-PER", "Marie": "B-PER", "Curie": "I-PER", "Jean": "B-PER",
            "Pedro": "B-PER", "Sánchez": "I-PER", "Lionel": "B-PER", "Messi": "I-PER", "Ana": "B-PER",
            "Giorgia": "B-PER", "Meloni": "I-PER", "Luca": "B-PER", "Sofia": "B-PER",
            "Siemens": "B-ORG", "AG": "I-ORG", "Volkswagen": "B-ORG", "Renault": "B-ORG", "Airbus": "B-ORG",
            "Telefónica": "B-ORG", "Iberia": "B-ORG", "Fiat": "B-ORG", "Ferrari": "B-ORG", "Eni": "B-ORG",
            "Bayern": "B-ORG"}
LOCATIONS = {"Paris", "Berlin", "München", "Rhein", "Köln", "China", "Hamburg", "Lyon", "Varsovie", "Seine",
             "Toulouse", "Marseille", "Roma", "Madrid", "Barcelona", "Ebro", "Zaragoza", "Lima", "Sevilla",
             "Londra", "Torino", "Maranello", "Tevere", "Libia", "Napoli"}


def _tag(words: list[str]) -> list[str]:
    tags = []
    for i, word in enumerate(words):
        if word in LOCATIONS:
            tags.append("B-LOC")
        elif word == "München" and words[i - 1] == "Bayern":
            tags.append("I-ORG")
        else:
            tags.append(ENTITIES.get(word, "O"))
    return tags


def _write_conll(path, lang: str) -> None:
    blocks = ["\n".join(f"{w}\t{t}" for w, t in zip(s.split(), _tag(s.split()))) for s in SENTENCES[lang]]
    path.write_text("-DOCSTART-\tO\n\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conll")
    tasks = {}
    for lang in SENTENCES:
        _write_conll(folder / f"{lang}.conll", lang)
    from datasets import concatenate_datasets

    data = concatenate_datasets([read_tagged_file(folder / f"{lang}.conll", lang=lang) for lang in SENTENCES])
    tasks = tagging_tasks_from_dataset(data, origin=str(folder))
    torch.manual_seed(0)
    model = XMetaForTokenClassification.for_labels(tasks["de"].label_map.names, task="toy-ner", max_length=32)
    args = MetaTrainingArguments(steps=2, meta_batch=2, k_shot=2, k_query=2, inner_steps=2, inner_lr=0.1,
                                 outer_lr=1e-3, eval_every=0)
    sources = {lang: tasks[lang] for lang in ("de", "fr", "es")}
    history = MetaTrainer(model, SentenceEpisodeSampler(sources, 2, 2, seed=0), args).train()
    assert len(history) == 2 and all(h.query_loss > 0 for h in history)
    it = tasks["it"]
    shots = [(it.texts[i], it.tags(i)) for i in range(3)]
    result = model.adapt(shots, lang="it", steps=10, lr=0.1)
    assert result.examples == 3
    return model, it


def test_adapt_evaluate_with_seqeval(run):
    model, it = run
    scores = model.evaluate(it.texts[3:], [it.tags(i) for i in range(3, len(it))], lang="it")
    print("real tagging scores (it, 3 held-out sentences):", scores)
    assert {"precision", "recall", "f1", "token_accuracy"} <= set(scores)
    assert 0.0 <= scores["f1"] <= 1.0 and scores["token_accuracy"] > 0.3


def test_save_load_and_export_on_real_encoder(run, tmp_path):
    model, it = run
    sentences = it.texts[3:]
    model.save_pretrained(tmp_path / "it")
    loaded = XMetaForTokenClassification.from_pretrained(tmp_path / "it")
    assert loaded.predict(sentences, "it") == model.predict(sentences, "it")
    model.export_merged(tmp_path / "plain", lang="it")
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "plain").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "plain")
    tagger = pipeline("token-classification", model=plain, tokenizer=tok, ignore_labels=[])
    for words, logits in zip(sentences, model.predict_logits(sentences, "it")):
        inputs = model.encode([words])
        plain_inputs = tok(" ".join(words), return_tensors="pt")
        assert plain_inputs["input_ids"].tolist() == inputs["input_ids"].tolist()
        with torch.no_grad():
            got = plain(**plain_inputs).logits[0][inputs["word_starts"][0]]
        assert (got - logits).abs().max().item() < 1e-4
        starts = inputs["word_starts"][0].nonzero().flatten().tolist()
        by_index = {t["index"]: t["entity"] for t in tagger(" ".join(words))}
        assert [by_index[i] for i in starts] == model.predict([words], "it")[0]
