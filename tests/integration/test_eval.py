"""kbsearch eval: BEIR fixture and sample-kb through the real indexer, every phase, loopback fake providers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kbsearch.errors import KbSearchError
from kbsearch_tools.evaluate import BeirDataset, eval_beir, eval_kb, format_report
from kbsearch_tools.fakes import FakeProvider, provider_env
from tests.conftest import KBSEARCH_CMD, ROOT, provider_settings, subprocess_env

BEIR = ROOT / "tests" / "fixtures" / "beir-mini"
QUERIES = ROOT / "eval" / "sample-kb-queries.yaml"
QUALITY = {"P@5", "nDCG@10", "MRR@10", "Recall@50"}
METRICS = QUALITY | {"p50_ms", "p95_ms", "degraded", "full_candidates"}


def test_beir_loading_handles_bom_and_empty_titles() -> None:
    data = BeirDataset.load(BEIR)
    assert len(data.corpus) == 30 and data.corpus["d02"][0] == ""
    assert len(data.queries) == 14
    assert any(not q.relevant for q in data.queries)


def test_beir_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("q1\td1\t1\n")
    with pytest.raises(KbSearchError, match="expected a header"):
        BeirDataset.load(tmp_path)
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq9\td1\t1\n")
    with pytest.raises(KbSearchError, match=r"not in queries\.jsonl"):
        BeirDataset.load(tmp_path)
    (tmp_path / "corpus.jsonl").write_text("{broken\n")
    with pytest.raises(KbSearchError, match=r"corpus\.jsonl:1"):
        BeirDataset.load(tmp_path)


def test_all_phases_with_fake_providers(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    settings = provider_settings(deepinfra, fireworks, embedding_dimensions=256)
    report = eval_beir(settings, BEIR).to_dict()
    assert set(report["phases"]) == {"lexical", "dense", "hybrid", "expanded", "reranked"} and not report["skipped"]
    for metrics in report["phases"].values():
        assert set(metrics) == METRICS and all(0.0 <= metrics[k] <= 1.0 for k in QUALITY | {"full_candidates"})
        assert metrics["degraded"] == 0 and metrics["p95_ms"] >= metrics["p50_ms"] > 0
    assert report["models"]["dense"] == "Qwen/Qwen3-Embedding-8B (256-d, qwen3)"
    assert report["models"]["reranked"].endswith("+ BM25 + expansion Qwen/Qwen3-32B + rerank Qwen/Qwen3-Reranker-8B")
    assert report["models"]["expanded"].endswith("+ BM25 + expansion Qwen/Qwen3-32B")
    phases = report["phases"]
    assert phases["hybrid"]["Recall@50"] >= phases["lexical"]["Recall@50"]
    assert phases["lexical"]["MRR@10"] > 0.8  # a regression in BM25 shows up here
    text = format_report(report)
    assert "reranked" in text and "nDCG@10" in text


def test_a_phase_that_fell_back_counts_its_degraded_searches(deepinfra: FakeProvider, fireworks: FakeProvider) -> None:
    settings = provider_settings(deepinfra, fireworks, embedding_dimensions=256).model_copy(
        update={"reranker_fallback_api_key": None}
    )
    deepinfra.fail("rerank", status=500)
    report = eval_beir(settings, BEIR, phases=("hybrid", "reranked")).to_dict()
    assert report["phases"]["hybrid"]["degraded"] == 0
    assert report["phases"]["reranked"]["degraded"] == report["queries"] > 0
    assert format_report(report).splitlines()[3].split()[-2] == str(report["queries"])


def test_phases_without_providers_are_skipped_with_reasons() -> None:
    from kbsearch.config import Settings

    report = eval_beir(Settings(), BEIR, phases=("lexical", "dense", "reranked")).to_dict()
    assert set(report["phases"]) == {"lexical"}
    assert "EMBEDDING_API_KEY" in report["skipped"]["dense"] and report["skipped"]["reranked"]


def test_sample_kb_hybrid_is_not_worse_than_lexical(deepinfra: FakeProvider) -> None:
    # the fake embedder hashes words: the seed's equal-weight RRF (real-model gates: test_oracle.py)
    settings = provider_settings(deepinfra, embedding_dimensions=256, rrf_k=60, search_bm25_weight=1.0)
    report = eval_kb(settings, ROOT / "sample-kb", QUERIES, phases=("lexical", "dense", "hybrid")).to_dict()
    lexical, hybrid = report["phases"]["lexical"], report["phases"]["hybrid"]
    assert report["queries"] == 44
    assert hybrid["P@5"] >= lexical["P@5"] and hybrid["Recall@50"] >= lexical["Recall@50"]
    assert lexical["MRR@10"] >= 0.9  # guards the BM25 tokenizer/stemmer against regressions


def test_eval_cli_json() -> None:
    proc = subprocess.run([*KBSEARCH_CMD, "eval", "--beir", str(BEIR), "--phases", "lexical", "--json", "--limit", "5"],
                          capture_output=True, text=True, env=subprocess_env(), check=False, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["dataset"] == "beir-mini" and out["queries"] == 5 and set(out["phases"]["lexical"]) == METRICS
    bad = subprocess.run([*KBSEARCH_CMD, "eval", "--kb", "sample-kb"], capture_output=True, text=True,
                         env=subprocess_env(), check=False, cwd=ROOT)  # fmt: skip
    assert bad.returncode == 2 and "--queries" in bad.stderr


def _gate(manifest: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KBSEARCH_CMD, "eval", "--classes", str(manifest), "--root", str(ROOT), "--phases",
                           "lexical,dense,hybrid", "--json", *extra], capture_output=True, text=True, env=env,
                          check=False, timeout=600)  # fmt: skip


def test_the_class_gate_fails_when_hybrid_loses_to_its_best_leg(deepinfra: FakeProvider, tmp_path: Path) -> None:
    """`kbsearch eval --classes --gate`: per-class figures and the gap; exit 1 naming the class when hybrid loses
    more than the slack to its best leg (here: Qdrant's RRF with BM25 weighed out, over a hash-of-words dense leg
    that BM25 beats by far), exit 0 when it does not."""
    manifest = tmp_path / "classes.yaml"
    manifest.write_text(
        "- {class: sample-en, corpus: sample-kb, queries: eval/sample-kb-queries.yaml}\n"
        "- {class: absent, corpus: no-such-folder, queries: eval/sample-kb-queries.yaml}\n",
        encoding="utf-8",
    )
    env = subprocess_env(**provider_env(deepinfra, roles=["EMBEDDING"]), EMBEDDING_DIMENSIONS="256")
    losing = _gate(manifest, env | {"SEARCH_FUSION": "rrf", "RRF_K": "1", "SEARCH_BM25_WEIGHT": "0"}, "--gate")
    assert losing.returncode == 1, losing.stderr
    report = json.loads(losing.stdout)
    sample = report["classes"]["sample-en"]
    ndcg = {p: m["nDCG@10"] for p, m in sample["phases"].items()}
    assert sample["queries"] == 44 and sample["gap"] == round(ndcg["hybrid"] - max(ndcg["lexical"], ndcg["dense"]), 4)
    assert sample["gap"] < -0.005 and report["gate"]["failures"] and "sample-en" in report["gate"]["failures"][0]
    assert "gate FAILED" in losing.stderr and "sample-en" in losing.stderr
    assert "not there" in report["skipped"]["absent"]
    # the same loss passes a gate whose slack covers it
    passing = _gate(manifest, env | {"SEARCH_FUSION": "rrf", "RRF_K": "1", "SEARCH_BM25_WEIGHT": "0"}, "--gate", "1")
    assert passing.returncode == 0 and "gate passed" in passing.stderr
    assert json.loads(passing.stdout)["classes"]["sample-en"]["gap"] < -0.005


def test_gate_failures_name_every_class_that_cannot_be_judged() -> None:
    from kbsearch_tools.evaluate import gate_failures, ungated

    phases = {"lexical": {"nDCG@10": 0.9}, "dense": {"nDCG@10": 0.8}, "hybrid": {"nDCG@10": 0.9, "degraded": 3}}
    report = {"classes": {"ok": {"queries": 44, "gap": 0.0, "phases": {p: {"nDCG@10": 0.9} for p in phases}},
                          "edge": {"queries": 40, "gap": -0.005, "phases": {}},
                          "lost": {"queries": 40, "gap": -0.0051, "phases": {}},
                          "degraded": {"queries": 50, "gap": 0.0, "phases": phases},
                          "legless": {"queries": 44, "gap": None, "phases": {}},
                          "small": {"queries": 39, "gap": -0.2, "phases": {}}}}  # fmt: skip
    failures = gate_failures(report)
    assert [f.split(":")[0] for f in failures] == ["lost", "degraded", "legless"]
    assert ungated(report) == ["small"]  # one query of 39 moves nDCG@10 by more than the slack: reported only
    assert [f.split(":")[0] for f in gate_failures(report, min_queries=1)] == ["lost", "degraded", "legless", "small"]


def _parallel_manifest(tmp_path: Path, ru_queries: list[str]) -> Path:
    """Two tiny corpora (English, Russian notes on the same two subjects) and three classes: English questions,
    the same in Russian (``parallel``), and the English ones over the Russian notes (the cross-language class)."""
    for lang, notes in {
        "en": {"backup.md": "# Back up your vault\n\nCopy the vault folder to another drive every week.\n",
               "sync.md": "# Sync settings\n\nSync keeps your settings and plugins on every device.\n"},
        "ru": {"копия.md": "# Резервная копия хранилища\n\nКопируйте папку хранилища на другой диск каждую неделю.\n",
               "синхронизация.md": "# Синхронизация настроек\n\nСинхронизация хранит настройки и плагины на всех "
                                   "устройствах.\n"},
    }.items():  # fmt: skip
        (tmp_path / lang).mkdir()
        for name, text in notes.items():
            (tmp_path / lang / name).write_text(text, encoding="utf-8")
    en = [("how do I back up my vault", "backup.md"), ("how are plugins kept on every device", "sync.md")]
    ru_relevant = ["копия.md", "синхронизация.md"]
    files = {
        "q-en": [{"query": q, "relevant": [r]} for q, r in en],
        "q-ru": [{"query": q, "relevant": [r]} for q, r in zip(ru_queries, ru_relevant, strict=False)],
        "cross": [{"query": q, "relevant": [r]} for (q, _), r in zip(en, ru_relevant, strict=True)],
    }
    for name, items in files.items():
        (tmp_path / f"{name}.yaml").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    manifest = tmp_path / "classes.yaml"
    manifest.write_text(
        "- {class: question-en, corpus: en, queries: q-en.yaml, parallel: question-ru}\n"
        "- {class: question-ru, corpus: ru, queries: q-ru.yaml}\n"
        "- {class: cross-en-to-ru, corpus: ru, queries: cross.yaml}\n",
        encoding="utf-8",
    )
    return manifest


def test_parallel_classes_give_every_query_its_translation(tmp_path: Path) -> None:
    """A manifest's ``parallel: <class>``: the two classes hold the same queries in two languages, in the same
    order; every class's queries get their translation, both ways (what the ``expanded`` phase's oracle answers),
    a class of the same texts (cross-language) included. Parallel classes of different lengths, or a parallel
    class that is not in the manifest, are a clear error."""
    from kbsearch_tools.evaluate import load_classes

    ru = ["как сделать резервную копию хранилища", "где хранятся плагины на всех устройствах"]
    manifest = _parallel_manifest(tmp_path, ru)
    classes = {c.name: c for c in load_classes(manifest, tmp_path)[0]}
    assert classes["question-en"].translations == {
        "how do I back up my vault": ru[0], "how are plugins kept on every device": ru[1]}  # fmt: skip
    assert classes["question-ru"].translations == {ru[0]: "how do I back up my vault",
                                                   ru[1]: "how are plugins kept on every device"}  # fmt: skip
    assert classes["cross-en-to-ru"].translations == classes["question-en"].translations
    only = load_classes(manifest, tmp_path, {"cross-en-to-ru"})[0]  # the table does not depend on --only
    assert only[0].translations == classes["question-en"].translations
    (tmp_path / "short").mkdir()
    short = _parallel_manifest(tmp_path / "short", ru[:1])
    with pytest.raises(KbSearchError, match="parallel but hold 2 and 1 queries"):
        load_classes(short, tmp_path / "short")
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("parallel: question-ru", "parallel: nope"),
                        encoding="utf-8")  # fmt: skip
    with pytest.raises(KbSearchError, match="unknown class nope"):
        load_classes(manifest, tmp_path)


def test_the_expanded_phase_searches_with_the_translation(tmp_path: Path) -> None:
    """``--phases ...,expanded`` with an oracle: the oracle's chat endpoint is the expansion model, answering each
    query with its translation from the parallel classes (an upper bound of an expansion model that translates),
    and the search's lexical leg of that variant counts for its language: an English question over Russian notes
    finds the Russian note by its Russian words."""
    from kbsearch.config import Settings
    from kbsearch_tools.evaluate import load_classes, run_classes
    from kbsearch_tools.oracle import unavailable

    reason = unavailable("e5")
    if reason:
        pytest.skip(reason)
    ru = ["как сделать резервную копию хранилища", "где хранятся плагины на всех устройствах"]
    classes, _ = load_classes(_parallel_manifest(tmp_path, ru), tmp_path, {"cross-en-to-ru"})
    report = run_classes(Settings(), classes, ("lexical", "hybrid", "expanded", "reranked"), oracle="e5").to_dict()
    phases = report["classes"]["cross-en-to-ru"]["phases"]
    assert phases["expanded"]["nDCG@10"] == 1.0 and phases["expanded"]["degraded"] == 0
    assert phases["lexical"]["nDCG@10"] < 1.0  # the English words alone do not find the Russian notes
    assert "translations" in report["models"]["expanded"]
    assert "expansion" not in report["models"]["reranked"]  # reranked is hybrid reranked, whatever runs beside it


def test_a_query_with_two_translations_is_a_clear_error(tmp_path: Path) -> None:
    """The translations are keyed by the query's text (as the search sends it, stripped): one text that two
    parallel pairs translate differently would give one class the other's translation, so it is refused."""
    from kbsearch_tools.evaluate import load_classes

    manifest = _parallel_manifest(tmp_path, ["как сделать резервную копию хранилища", "где хранятся плагины"])
    (tmp_path / "q-en2.yaml").write_text(json.dumps([{"query": " how do I back up my vault ", "relevant": ["x.md"]}]))
    (tmp_path / "q-ru2.yaml").write_text(
        json.dumps([{"query": "другой перевод", "relevant": ["y.md"]}], ensure_ascii=False)
    )
    with manifest.open("a", encoding="utf-8") as f:
        f.write("- {class: long-en, corpus: en, queries: q-en2.yaml, parallel: long-ru}\n"
                "- {class: long-ru, corpus: ru, queries: q-ru2.yaml}\n")  # fmt: skip
    with pytest.raises(KbSearchError, match="has two translations"):
        load_classes(manifest, tmp_path)


def test_a_class_is_also_judged_kind_by_kind(deepinfra: FakeProvider, tmp_path: Path) -> None:
    """`kbsearch eval --classes`: a class whose queries carry two or more ``kind`` values is also reported kind by
    kind (a cross-language class holds questions, paraphrases and long-note questions: the issue's English
    questions over Russian notes are one of them), each kind's nDCG@10 per phase and its gap; the kinds' figures
    weighted by their counts are the class's. A class of one kind, or with a query of no kind, has no kind rows."""
    import yaml

    items = yaml.safe_load(QUERIES.read_text(encoding="utf-8"))
    russian = [any("а" <= ch <= "я" for ch in item["query"].lower()) for item in items]
    kinded = [dict(item, kind="ru" if ru else "en") for item, ru in zip(items, russian, strict=True)]
    (tmp_path / "kinds.yaml").write_text(yaml.safe_dump(kinded, allow_unicode=True), encoding="utf-8")
    (tmp_path / "one.yaml").write_text(yaml.safe_dump([dict(i, kind="question") for i in items],
                                                      allow_unicode=True), encoding="utf-8")  # fmt: skip
    (tmp_path / "some.yaml").write_text(yaml.safe_dump(kinded[:-1] + items[-1:], allow_unicode=True), encoding="utf-8")
    manifest = tmp_path / "classes.yaml"
    manifest.write_text("".join(f"- {{class: {name}, corpus: sample-kb, queries: {tmp_path / name}.yaml}}\n"
                                for name in ("kinds", "one", "some")), encoding="utf-8")  # fmt: skip
    env = subprocess_env(**provider_env(deepinfra, roles=["EMBEDDING"]), EMBEDDING_DIMENSIONS="256")
    run = _gate(manifest, env)
    assert run.returncode == 0, run.stderr
    classes = json.loads(run.stdout)["classes"]
    kinds = classes["kinds"]["kinds"]
    assert list(kinds) == ["en", "ru"] and kinds["en"]["queries"] == russian.count(False) > 0
    assert kinds["ru"]["queries"] == russian.count(True) > 0
    for phase, whole in classes["kinds"]["phases"].items():
        mixed = sum(k["nDCG@10"][phase] * k["queries"] for k in kinds.values()) / len(items)
        assert abs(mixed - whole["nDCG@10"]) < 1e-3, phase
    for k in kinds.values():
        assert k["gap"] == round(k["nDCG@10"]["hybrid"] - max(k["nDCG@10"]["lexical"], k["nDCG@10"]["dense"]), 4)
    assert classes["one"]["kinds"] == {} and classes["some"]["kinds"] == {}
    text = subprocess.run([*KBSEARCH_CMD, "eval", "--classes", str(manifest), "--root", str(ROOT), "--only", "kinds",
                           "--phases", "lexical,dense,hybrid"], capture_output=True, text=True, env=env, check=True,
                          timeout=600).stdout  # fmt: skip
    rows = [line.split() for line in text.splitlines() if line.startswith("  · ")]
    assert [r[1:3] for r in rows] == [["en", str(kinds["en"]["queries"])], ["ru", str(kinds["ru"]["queries"])]]
    assert float(rows[0][5]) == pytest.approx(kinds["en"]["nDCG@10"]["hybrid"], abs=6e-4)


def test_a_query_s_kind_must_be_a_string(tmp_path: Path) -> None:
    from kbsearch_tools.metrics import load_queries

    bad = tmp_path / "q.yaml"
    bad.write_text("- {query: a, relevant: [x.md], kind: [question]}\n", encoding="utf-8")
    with pytest.raises(KbSearchError, match="item 0: kind must be a string"):
        load_queries(bad)
    bad.write_text("- {query: a, relevant: [x.md], kind: question}\n- {query: b, relevant: [y.md]}\n", encoding="utf-8")
    assert [q.kind for q in load_queries(bad)] == ["question", None]
