"""eval/replay/replay.py's counts over a tiny synthetic capture (capture.py's format, real legs and chunks):
``--compare`` (two trees' fusions, each in its own process), ``--set`` / ``--set-base``, ``--changes``, ``--swaps``.

The capture: notes x, y, z, w. Dense ranks x (0.9) above y (0.85); BM25 ranks y (10) above x (8): the legs swap
their first two notes, BM25 is sure of y (its clear lead), and the defaults put y first. With ``lexical_weight=0
lead_bonus=0`` the fusion follows dense and puts x first. So, of the searches below, the one whose answer is x
is better under that setting, the two whose answer is y are worse, and the rest do not move.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kbsearch.fusion import analyse
from kbsearch.lexical import term_id, tokenize
from kbsearch.qdrant.query import PROBE_DEPTH, Leg, ScoredChunk, point_id
from tests.conftest import ROOT, subprocess_env

REPLAY = ROOT / "eval" / "replay" / "replay.py"
DENSE_FIRST = ["--set", "lexical_weight=0", "--set", "lead_bonus=0"]


def _chunks(scores: list[tuple[str, float]]) -> list[ScoredChunk]:
    return [ScoredChunk(f"{note}-0", score, {"path": f"{note}.md", "doc_id": note, "lang": "en"})
            for note, score in scores]  # fmt: skip


def _search(query: str, relevant: set[str], bm25: str = "yxz") -> tuple:
    """Dense ranks x, y, z, w; BM25 ranks the notes of ``bm25`` in that order."""
    dense = _chunks([("x", 0.9), ("y", 0.85), ("z", 0.5), ("w", 0.4)])
    lexical = _chunks(list(zip(bm25, (10.0, 8.0, 2.0), strict=True)))
    results = [(Leg("dense"), dense), (Leg("lexical"), lexical)]
    return (query, frozenset(f"{n}.md" for n in relevant), results, analyse(query), 10)


def _capture(root: Path) -> list[Path]:
    """e5 question-en: x right (dense), y right (BM25), z right (neither), a search whose legs agree and one whose
    answer no leg has;
    use detail-ru: y right (BM25), x and y right (both)."""
    cells = {
        "e5": {
            "question-en": [
                _search("where is the backup schedule set", {"x"}),
                _search("how do I rename a vault folder", {"y"}),
                _search("which plugin exports a graph", {"z"}),
                _search("can I sync two devices offline", {"x"}, bm25="xyz"),
                # dense's first is BM25's second, but BM25's first is not dense's second: not a swap
                _search("is there a dark theme for the mobile app", {"v"}, bm25="zxy"),
            ]
        },
        "use": {
            "detail-ru": [
                _search("как переименовать хранилище", {"y"}),
                _search("где задать расписание копий", {"x", "y"}),
            ]
        },
    }
    paths = []
    for model, classes in cells.items():
        path = root / f"{model}-classes.pkl"
        phases = {"lexical": 0.5, "dense": 0.5, "hybrid": 0.5}
        with path.open("wb") as f:
            pickle.dump({name: {"rows": rows, "phases": phases} for name, rows in classes.items()}, f)
        paths.append(path)
    return paths


def run_script(script: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """One of eval/replay's scripts as a process (tests/unit/test_learn.py runs learn.py with it too)."""
    command = [sys.executable, str(script), *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, env=subprocess_env(), cwd=ROOT, timeout=300, check=False
    )


def _replay(*args: str | Path, stale: bool = True) -> subprocess.CompletedProcess[str]:
    """replay.py over ``args``; with ``stale`` (this file's synthetic captures: their classes' names are committed
    classes', their queries the test's own), ``--allow-stale``."""
    return run_script(REPLAY, *args, *(["--allow-stale"] if stale else []))


def _moved(out: str) -> str:
    found = re.findall(r"searches better/worse (\d+/\d+)", out)
    assert len(found) == 1, out
    return found[0]


def _listed(out: str) -> list[str]:
    """The searches ``--changes`` lists."""
    return [line for line in out.splitlines() if re.match(r" +\S+ +\S+ +\d\.\d{3} → \d\.\d{3}  '", line)]


def test_compare_with_the_same_tree_moves_nothing(tmp_path: Path) -> None:
    done = _replay(*_capture(tmp_path), "--compare", ROOT, "--changes")
    assert done.returncode == 0, done.stderr
    assert _moved(done.stdout) == "0/0"
    assert "evidence re-derived by its analyse reads differently from the capture's in 0 of 7 searches" in done.stdout
    assert _listed(done.stdout) == []  # --changes lists no search
    assert re.search(r"e5   question-en +n=   5 hybrid (\d\.\d{4}) → \1 \(\+0\.0000\)", done.stdout), done.stdout


def test_compare_counts_each_side_with_its_own_settings(tmp_path: Path) -> None:
    captures = _capture(tmp_path)
    done = _replay(*captures, "--compare", ROOT, *DENSE_FIRST, "--detail", "--changes")
    assert done.returncode == 0, done.stderr
    assert _moved(done.stdout.split("\n    ")[0]) == "1/2"  # the summary line; --detail adds each cell's
    assert re.search(r"e5   question-en .* better/worse 1/1\n", done.stdout), done.stdout
    assert re.search(r"use  detail-ru .* better/worse 0/1\n", done.stdout), done.stdout
    assert _listed(done.stdout) == [
        "    e5   question-en          0.631 → 1.000  'where is the backup schedule set'  [x.md]",
        "    e5   question-en          1.000 → 0.631  'how do I rename a vault folder'  [y.md]",
        "    use  detail-ru            1.000 → 0.631  'как переименовать хранилище'  [y.md]",
    ]
    # the same settings on the other side: the counts turn round
    done = _replay(*captures, "--compare", ROOT, *[a.replace("--set", "--set-base") for a in DENSE_FIRST])
    assert done.returncode == 0, done.stderr
    assert _moved(done.stdout.split("\n    ")[0]) == "2/1"


def test_compare_imports_the_other_trees_fusion(tmp_path: Path) -> None:
    """TREE's side runs TREE's kbsearch: a checkout whose fusion defaults follow dense scores as --set does."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "layers" / "kbsearch" / "kbsearch", tree / "layers" / "kbsearch" / "kbsearch")
    fusion = tree / "layers" / "kbsearch" / "kbsearch" / "fusion.py"
    source, n = re.subn(r"(lexical_weight|lead_bonus): float = [0-9.]+", r"\1: float = 0.0", fusion.read_text())
    assert n == 2
    fusion.write_text(source)
    done = _replay(*_capture(tmp_path), "--compare", tree)
    assert done.returncode == 0, done.stderr
    assert f"base: {tree / 'layers' / 'kbsearch'}:" in done.stdout
    assert _moved(done.stdout) == "2/1"


def test_swaps_counts_which_leg_was_right(tmp_path: Path) -> None:
    done = _replay(*_capture(tmp_path), "--swaps")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("e5   question-en          swapped   3: dense right 1, BM25 right 1, both 0, neither 1;")
    assert lines[0].endswith("hybrid's first is dense's 0, BM25's 3, another 0")
    assert lines[1].startswith("use  detail-ru            swapped   2: dense right 0, BM25 right 1, both 1, neither 0;")
    assert lines[2].startswith("e5   1 cells            swapped   3:")
    # under the dense-first setting the fusion follows dense in every swapped search
    done = _replay(*_capture(tmp_path), "--swaps", *DENSE_FIRST, "--exclude", "question")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "use  detail-ru            swapped   2: dense right 0, BM25 right 1, both 1, neither 0; hybrid's first is "
        "dense's 2, BM25's 0, another 0",
        "use  1 cells            swapped   2: dense right 0, BM25 right 1, both 1, neither 0; hybrid's first is "
        "dense's 2, BM25's 0, another 0",
    ]


def test_bad_options_are_refused_with_a_reason(tmp_path: Path) -> None:
    captures = _capture(tmp_path)
    done = _replay(*captures, "--compare", tmp_path / "nowhere")
    assert done.returncode == 1
    assert "no layers/kbsearch/kbsearch/fusion.py there" in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "e5-empty.pkl").write_bytes(b"")
    for path in (tmp_path / "e5-empty.pkl", tmp_path / "e5-missing.pkl"):
        done = _replay(path, "--compare", ROOT)
        assert done.returncode == 1
        assert done.stderr.startswith(f"{path}: not a capture of eval/replay/capture.py (")
    done = _replay(*captures, "--set-base", "lexical_weight=0.6")
    assert done.returncode == 2
    assert "--set-base sets TREE's side of --compare TREE" in done.stderr
    done = _replay(*captures, "--swaps", "--variants", ROOT / "eval" / "replay" / "variants_s25.py")
    assert done.returncode == 2
    assert "--swaps counts over the defaults' fusion: not with --variants" in done.stderr
    done = _replay(*captures, "--compare", ROOT, "--set-base", "lexical_weight=high")
    assert done.returncode == 1
    assert "--set-base lexical_weight=high: 'high' is not a number" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_capture_of_a_tree_without_a_field_of_query_evidence_reads_it_from_this_tree_s_analyse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A capture pickled by a tree before session 31 holds no ``ui_path``: unpickled, the field would read its class
    default (False) on every menu path, and the replay would fuse "Format - Text - Uppercase" as a question.
    ``replay.current`` derives a missing field with this tree's ``analyse`` and keeps the captured ones."""
    monkeypatch.syspath_prepend(str(REPLAY.parent))
    spec = importlib.util.spec_from_file_location("replay_under_test", REPLAY)
    assert spec is not None and spec.loader is not None
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    old = pickle.loads(pickle.dumps(analyse("Format - Text - Uppercase")))  # noqa: S301 (its own bytes)
    del old.__dict__["ui_path"]  # as a capture of an older tree unpickles
    assert old.ui_path is False  # the class default: what the replay read before
    upgraded = replay.current(old)
    assert upgraded.ui_path is True and upgraded.terms == old.terms and upgraded.identifiers == old.identifiers
    same = analyse("how do I move a vault")
    assert replay.current(same) is same


def test_every_corpus_s_same_language_question_class_is_held_to_the_question_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 19's same-language question cells need +0.005 over the better leg, the rest −0.005: every
    ``<corpus>-question-en`` / ``-ru`` class of every ``eval/classes*.yaml`` is replayed against the first (session 36:
    GIMP's manual's were not, and the replay called a gap of +0.001 met)."""
    monkeypatch.syspath_prepend(str(REPLAY.parent))
    spec = importlib.util.spec_from_file_location("replay_under_test", REPLAY)
    assert spec is not None and spec.loader is not None
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    names = {e["class"] for m in (ROOT / "eval").glob("classes*.yaml") for e in yaml.safe_load(m.read_text("utf-8"))}
    questions = {n for n in names if re.fullmatch(r"(\w+-)?question-(en|ru)", n)}
    assert {"question-en", "gimp-question-en", "gimp-question-ru"} <= questions
    assert {n: replay._target(n) for n in questions} == dict.fromkeys(questions, 0.005)


def test_a_corpus_capture_s_class_named_as_another_capture_s_is_its_own_cell(tmp_path: Path) -> None:
    """The bilingual KB's capture (``e5-classes-bil.pkl``) has a ``question-en`` as the vault's (``e5-classes.pkl``)
    has: each was one cell ``(e5, question-en)``, the file read last replacing the other's searches unsaid (session
    33: 94 of 106 cells replayed). The corpus's class is ``bil:question-en`` now, kept to its class's target; two
    captures holding the very same cell are refused."""
    vault = _capture(tmp_path)[0]  # e5-classes.pkl: question-en, 5 searches
    bilingual = tmp_path / "e5-classes-bil.pkl"
    with bilingual.open("wb") as f:
        pickle.dump({"question-en": {"rows": [_search("where is the backup schedule set", {"y"})],
                                     "phases": {"lexical": 0.5, "dense": 0.5, "hybrid": 0.5}}}, f)  # fmt: skip
    done = _replay(vault, bilingual, "--compare", ROOT, "--detail", "--no-texts")  # CI has no .kbsearch/bil
    assert done.returncode == 0, done.stderr
    assert re.search(r"e5   question-en +n=   5 hybrid", done.stdout), done.stdout
    assert re.search(
        r"e5   bil:question-en +n=   1 hybrid 1\.0000 → 1\.0000 \(\+0\.0000\) gap \+0\.5000 better", done.stdout
    )
    copy = tmp_path / "other" / "e5-classes-bil.pkl"
    copy.parent.mkdir()
    shutil.copy(bilingual, copy)
    done = _replay(bilingual, copy, "--compare", ROOT)
    assert done.returncode != 0 and "both hold e5 bil:question-en: replay them apart" in done.stderr


def test_texts_finds_a_corpus_capture_s_cell_by_the_name_replay_gives_it(tmp_path: Path) -> None:
    """``texts.class_corpora`` names cells as ``replay.cell_name`` does: the bilingual KB's ``question-en`` (a class of
    ``classes-bil.yaml``) is ``bil:question-en`` and finds the bilingual corpus, the vault's ``question-en`` keeps
    its own; a corpus's prefixed class (``lo-keyword-en``) stays itself. (It keyed by the bare class name, so the
    vault's corpus answered for the bilingual capture and its chunks found no text.)"""
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "classes.yaml").write_text("- {class: question-en, corpus: vault, queries: q.yaml}\n")
    (tmp_path / "eval" / "classes-bil.yaml").write_text("- {class: question-en, corpus: bil, queries: q.yaml}\n")
    (tmp_path / "eval" / "classes-lo.yaml").write_text("- {class: lo-keyword-en, corpus: lo, queries: q.yaml}\n")
    spec = importlib.util.spec_from_file_location("replay_texts", ROOT / "eval" / "replay" / "texts.py")
    assert spec is not None and spec.loader is not None
    texts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(texts)
    corpora = texts.class_corpora(tmp_path)
    assert corpora == {
        "question-en": (tmp_path / "vault").resolve(),
        "bil:question-en": (tmp_path / "bil").resolve(),
        "lo-keyword-en": (tmp_path / "lo").resolve(),
    }


def test_texts_refuses_a_cell_whose_listed_corpus_is_absent_and_attaches_a_present_one_s_title(tmp_path: Path) -> None:
    """The bilingual KB (``.kbsearch/bil``) is built, not committed: in a tree without it, ``texts.attach`` skipped its
    cells unsaid, so their chunks replayed without title, heading and text and ``--compare`` measured none of the
    rules reading them (session 33, rev33c: every ``bil:`` cell 0 better / 0 worse). A cell whose listed corpus is
    absent is refused, naming it; a present corpus's chunk gets its note's title (the frontmatter's, else its H1)."""
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "classes-bil.yaml").write_text("- {class: question-en, corpus: bil, queries: q.yaml}\n")
    spec = importlib.util.spec_from_file_location("replay_texts", ROOT / "eval" / "replay" / "texts.py")
    assert spec is not None and spec.loader is not None
    texts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(texts)
    chunk = ScoredChunk(point_id("Теги.md", 0), 1.0, {"path": "Теги.md", "doc_id": "Теги.md", "lang": "ru"})
    cells: dict[tuple[str, str], dict[str, Any]] = {
        ("e5", "bil:question-en"): {"rows": [("теги", frozenset(), [(Leg("dense"), [chunk])], None, 10)]}
    }
    with pytest.raises(SystemExit, match=r"no corpus for 1 captured cells: bil:question-en \(.*bil\)"):
        texts.attach(cells, tmp_path)
    assert "title" not in chunk.payload
    (tmp_path / "bil").mkdir()
    (tmp_path / "bil" / "Теги.md").write_text("# Теги\n\nТеги помогают находить заметки.\n", encoding="utf-8")
    texts.attach(cells, tmp_path)
    assert chunk.payload["title"] == "Теги" and chunk.payload["text"]


def test_texts_refuse_a_class_whose_corpus_is_not_here(tmp_path: Path) -> None:
    """Review of fus33b (rev33a): eval/replay/texts.py skipped a class whose corpus is not on the machine, so the
    bilingual KB's cells (corpus .kbsearch/bil, built by eval/make_bilingual.py, not committed) replayed with no
    chunk text and the whole-phrase pin never fired there, with no word but a smaller "texts: N of M" count. A
    corpus not here stops the replay, with a reason; ``--no-texts`` replays as before."""
    if (ROOT / ".kbsearch" / "bil").is_dir():
        pytest.skip("the bilingual KB is built in this tree")
    capture = tmp_path / "e5-classes-bil.pkl"
    with capture.open("wb") as f:
        rows = [_search("where is the backup schedule set", {"x"})]
        pickle.dump({"known-item-en": {"rows": rows, "phases": {"lexical": 0.5, "dense": 0.5, "hybrid": 0.5}}}, f)
    done = _replay(capture)
    assert done.returncode != 0 and "known-item-en" in done.stderr and "no corpus" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert _replay(capture, "--no-texts").returncode == 0


def _captured_by_reading(tmp_path: Path, version: int) -> Path:
    """A capture of this test's (:func:`_capture`) recording ``version`` as the reading its notes were chunked by."""
    capture = _capture(tmp_path)[0]
    with capture.open("rb") as f:
        cells = pickle.load(f)  # noqa: S301 (the capture this test wrote)
    for captured in cells.values():
        captured["parse_version"] = version
    with capture.open("wb") as f:
        pickle.dump(cells, f)
    return capture


def test_texts_refuse_a_capture_of_another_reading_of_notes(tmp_path: Path) -> None:
    """Review of fus33b (rev33a): a point id is ``uuid5(path#index)``; notes read by another PARSE_VERSION may chunk
    otherwise, and the same id then names another chunk's text. capture.py records the version; texts.py stops on
    a capture of another one."""
    done = _replay(_captured_by_reading(tmp_path, 3))
    assert done.returncode != 0 and "PARSE_VERSION 3" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_texts_take_a_capture_of_a_reading_that_chunks_the_corpora_alike(tmp_path: Path) -> None:
    """rel34: PARSE_VERSION 5 changed how a ``$$`` block closes and no note of the eval's corpora
    (``eval/dump_parse.py``): session 34's captures (``parse_version`` 4) replay with their texts, not refused."""
    done = _replay(_captured_by_reading(tmp_path, 4))
    assert done.returncode == 0 and "PARSE_VERSION" not in done.stderr, done.stderr


def test_texts_attach_a_note_s_aliases_as_the_indexer_writes_them(tmp_path: Path) -> None:
    """rev34e: a search now carries each chunk's ``aliases`` (``links.payload_aliases``), which ``fusion._unnamed``
    reads; the captures keep none, so ``texts.attach`` re-reads them from the corpus (none for a note without
    aliases), and a replay reads what a search would."""
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "classes-bil.yaml").write_text("- {class: question-en, corpus: bil, queries: q.yaml}\n")
    (tmp_path / "bil").mkdir()
    (tmp_path / "bil" / "Метаданные.md").write_text(
        "---\naliases: [Свойства, ' Frontmatter ']\n---\n# Метаданные\n\nсвойства заметки\n", encoding="utf-8"
    )
    (tmp_path / "bil" / "Теги.md").write_text("# Теги\n\nТеги помогают находить заметки.\n", encoding="utf-8")
    spec = importlib.util.spec_from_file_location("replay_texts", ROOT / "eval" / "replay" / "texts.py")
    assert spec is not None and spec.loader is not None
    texts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(texts)
    aliased, plain = (
        ScoredChunk(point_id(path, 0), 1.0, {"path": path, "doc_id": path, "lang": "ru"})
        for path in ("Метаданные.md", "Теги.md")
    )
    cells: dict[tuple[str, str], dict[str, Any]] = {
        ("e5", "bil:question-en"): {"rows": [("свойства", frozenset(), [(Leg("dense"), [aliased, plain])], None, 10)]}
    }
    texts.attach(cells, tmp_path)
    assert aliased.payload["aliases"] == ["Свойства", "Frontmatter"] and "aliases" not in plain.payload


VOCABULARY = ROOT / "eval" / "replay" / "vocabulary.py"


def _worded(query: str, relevant: str, texts: dict[str, str]) -> tuple:
    """Dense ranks x (0.9) above y (0.85), BM25 y (10) above x (8): the legs disagree on their first. Every query
    term is probed (its best chunk 5.0, ``PROBE_DEPTH`` chunks: common, so no exact match or rare-term agreement), so
    y holds half of the attainable score and the fusion keeps dense's first, x. Each chunk's text is ``texts``."""
    dense = [
        ScoredChunk(f"{n}-0", s, {"path": f"{n}.md", "lang": "en", "text": texts[n]})
        for n, s in (("x", 0.9), ("y", 0.85))
    ]
    lexical = [
        ScoredChunk(f"{n}-0", s, {"path": f"{n}.md", "lang": "en", "text": texts[n]})
        for n, s in (("y", 10.0), ("x", 8.0))
    ]
    probes = [(Leg("probe", term=term_id(stem), bare=True), [ScoredChunk(f"p{stem}{i}", 5.0 - i / 10, {}) for i in range(PROBE_DEPTH)])
              for stem in dict.fromkeys(tokenize(query))]  # fmt: skip
    results = [(Leg("dense"), dense), (Leg("lexical"), lexical), *probes]
    return (query, frozenset({f"{relevant}.md"}), results, analyse(query), 10)


def test_vocabulary_reads_which_leg_s_first_holds_more_of_the_query_s_words(tmp_path: Path) -> None:
    """Two searches whose legs disagree, the fusion putting dense's first (x) first in both: in the first the answer
    is x, which holds every word of the question while y repeats one; in the second the answer is y, which holds
    them all while x repeats one (a lost search where the words point right). Dense's first holding more goes with
    dense being right in both: AUC 1.00; the lost search is listed with both firsts' shares, and the cell's mean
    nDCG@10 with the right one of the two firsts first."""
    query = "rename the vault folder quickly"
    assert len(tokenize(query)) == 4
    searches = [
        _worded(query, "x", {"x": "rename the vault folder quickly", "y": "vault vault vault vault"}),
        _worded(query, "y", {"x": "folder folder folder", "y": "quickly rename a vault folder"}),
    ]
    path = tmp_path / "e5-classes.pkl"
    with path.open("wb") as f:
        pickle.dump({"question-en": {"rows": searches, "phases": {"lexical": 0.5, "dense": 0.5, "hybrid": 0.5}}}, f)
    done = run_script(VOCABULARY, path, "--no-texts", "--cells", "e5:question-en", "--allow-stale")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.match(r"e5 +vault +Q +2 +1 +1\.00 +0\.50 +1 / +0 / +0$", lines[1]), done.stdout
    assert lines[2].startswith(
        "e5   question-en            BM25  right, fused first dense's: vocabulary dense 0.25 BM25 1.00, rare terms 0/0 of 0"
    )
    # the ceiling: the second search with y first scores 1.0, the first already does
    assert (
        lines[3]
        == "e5   question-en            n=2: hybrid 0.8155, the right one of the legs' two firsts always first 1.0000"
    )
    assert len(lines) == 4


def _sample_kb_capture(tmp_path: Path, edit: str | None = None) -> Path:
    """A capture of the committed ``sample-kb`` class (eval/classes.yaml: eval/sample-kb-queries.yaml over the
    committed sample-kb), its searches the set's queries and judgements in order; ``edit``: ``query`` (the first
    query reworded) or ``judged`` (the first query's relevant notes changed), as a capture taken before the set
    changed holds them."""
    from kbsearch_tools.metrics import load_queries

    queries = [(q.query, set(q.relevant)) for q in load_queries(ROOT / "eval" / "sample-kb-queries.yaml")]
    if edit == "query":
        queries[0] = (queries[0][0] + " please", queries[0][1])
    elif edit == "judged":
        queries[0] = (queries[0][0], queries[0][1] | {"en/Somewhere else.md"})
    rows = [(q, frozenset(relevant), _search(q, set())[2], analyse(q), 10) for q, relevant in queries]
    capture = tmp_path / "e5-classes.pkl"
    with capture.open("wb") as f:
        pickle.dump({"sample-kb": {"rows": rows, "phases": {"lexical": 0.5, "dense": 0.5, "hybrid": 0.5}}}, f)
    return capture


@pytest.mark.parametrize(
    ("edit", "what"),
    [("query", "1 captured queries not in eval/sample-kb-queries.yaml; 1 of its queries not captured"),
     ("judged", "1 judged otherwise")],
)  # fmt: skip
def test_a_capture_whose_queries_are_not_the_committed_set_is_refused_unless_allowed(
    tmp_path: Path, edit: str, what: str
) -> None:
    """Session 35 (fus35b; rev34d's finding 6): replay32's LibreOffice pair held four ``lo-keyword-ru`` queries the
    committed set no longer has, and replayed silently. A capture whose cell is not its class's committed set (its
    queries or relevant notes, in order, as ``kbsearch eval --classes`` loads them) is refused, naming the capture,
    the cell and what differs; ``--allow-stale`` replays it, each such cell flagged ``STALE``; a capture of the
    committed set replays unflagged."""
    fresh = _replay(_sample_kb_capture(tmp_path), "--no-texts", stale=False)
    assert fresh.returncode == 0 and "STALE" not in fresh.stderr, fresh.stderr
    capture = _sample_kb_capture(tmp_path, edit)
    done = _replay(capture, "--no-texts", stale=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert f"{capture}: e5 sample-kb: {what}" in done.stderr and "--allow-stale" in done.stderr, done.stderr
    allowed = _replay(capture, "--no-texts")
    assert allowed.returncode == 0 and f"STALE {capture}: e5 sample-kb: {what}" in allowed.stderr, allowed.stderr
    assert "e5   sample-kb" in allowed.stdout


def test_a_capture_named_with_a_prefix_is_refused_saying_how_its_name_was_read(tmp_path: Path) -> None:
    """Session 35 review (rev35a): ``replay34/fus34a-e5-expanded-bil.pkl`` reads as model ``fus34a`` and corpus
    ``expanded-bil`` (``<model>-<kind>[-<corpus>].pkl``), so its cells (``expanded-bil:code-en``) match no listed
    class: refused, but said as "no eval/classes*.yaml lists its class" while ``code-en`` is listed, and with
    ``--allow-stale`` replayed as model ``fus34a`` with no chunk text attached. The refusal now names how the file's
    name was read and the listed class of that name."""
    capture = _sample_kb_capture(tmp_path)
    named = capture.rename(tmp_path / "fus99-e5-classes-lo.pkl")
    done = _replay(named, "--no-texts", stale=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert f"{named}: fus99 classes-lo:sample-kb: no eval/classes*.yaml lists 'classes-lo:sample-kb'" in done.stderr
    assert "read from the file's name as model 'fus99'" in done.stderr
    assert "class 'sample-kb' is listed as sample-kb (classes.yaml)" in done.stderr, done.stderr


def test_generated_legs_fuse_alike_run_after_run_and_every_exact_candidate_has_a_standing_reason() -> None:
    """Session 35 review (rev35a): ``generated_legs.py`` fuses searches no capture holds, the seed deciding each, so
    two trees' lines compare with ``cmp`` (3c36eb1 against ab52e62's ``standing_pins``: EVAL.md). Its lines are the
    same run after run, and ``fuse``'s reasons agree with its ``exact`` flags: a candidate is exact exactly when its
    reason stands (``exact``, ``phrase``, ``about``, ``bridged``)."""
    script = ROOT / "eval" / "replay" / "generated_legs.py"
    runs = [run_script(script, "0", "400", "--reasons") for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    lines = [json.loads(line) for line in runs[0].stdout.splitlines()]
    assert len(lines) == 400
    standing = {"exact", "phrase", "about", "bridged"}
    exact = [(line["reasons"].get(path), line["q"]) for line in lines for path, _, pinned in line["out"] if pinned]
    assert len(exact) > 40 and all(reason in standing for reason, _ in exact), exact
    unpinned = [line["reasons"][path] for line in lines for path, _, pinned in line["out"]
                if not pinned and path in line["reasons"]]  # fmt: skip
    assert unpinned and not any(reason in standing for reason in unpinned)


def test_vocabulary_refuses_a_capture_that_is_not_the_committed_set_unless_allowed(tmp_path: Path) -> None:
    """Session 35 review (rev35a): fus35b's check refuses a stale capture in ``replay.py`` and ``new_pins.py``;
    fus35a's ``vocabulary.py``, merged beside it, read one silently (its AUCs and ceilings over old queries)."""
    capture = _sample_kb_capture(tmp_path, "query")
    done = run_script(VOCABULARY, capture, "--no-texts")
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert f"{capture}: e5 sample-kb: 1 captured queries not in eval/sample-kb-queries.yaml" in done.stderr
    allowed = run_script(VOCABULARY, capture, "--no-texts", "--allow-stale")
    assert allowed.returncode == 0 and f"STALE {capture}: e5 sample-kb" in allowed.stderr, allowed.stderr


def test_fus37_s_variants_still_edit_this_tree_s_across() -> None:
    """eval/replay/variants_s37_fus37.py rewrites lines of ``fusion._across`` (EVAL.md, session 37, fus37): each
    variant's edits must still find their line once, or its figures would replay main's ``_across``."""
    sys.path.insert(0, str(ROOT / "eval" / "replay"))
    spec = importlib.util.spec_from_file_location(
        "variants_s37_fus37", ROOT / "eval" / "replay" / "variants_s37_fus37.py"
    )
    assert spec is not None and spec.loader is not None
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    fusion = variants.hooked_fusion()
    for name in variants.EDITS:
        edited = variants.variant(fusion, name)
        assert callable(edited) and edited is not fusion._across


def test_a_capture_of_the_hybrid_phase_alone_replays_its_legs_for_the_gap(tmp_path: Path) -> None:
    """bil37's ``bilg`` captures hold ``--phases hybrid`` alone: the replay measured no gap and stopped on the
    missing ``lexical`` phase (a KeyError on main). Each missing leg's nDCG@10 is now the captured legs fused in that
    leg's mode: dense ranks x, y, z, w and BM25 its ``bm25`` order, so over the five searches of ``_capture`` each
    leg finds 1 + 1/log2(3) + 1/2 + 1 + 0 of 5 (0.6262)."""
    e5, _ = _capture(tmp_path)
    with e5.open("rb") as f:
        cells = pickle.load(f)  # noqa: S301 (the test's own capture)
    for cell in cells.values():
        cell["phases"] = {"hybrid": cell["phases"]["hybrid"]}
    with e5.open("wb") as f:
        pickle.dump(cells, f)
    done = _replay(e5, "--no-texts")
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"question-en +n= +5 lexical 0\.6262 dense 0\.6262 hybrid \d\.\d{4} gap [-+]\d\.\d{4}", done.stdout
    )


def test_the_defaults_replay_flags_each_cell_under_its_target_and_counts_them_per_model(tmp_path: Path) -> None:
    """Session 39 (cap39): the baseline's SHORT cells were counted by hand from each cell's gap; the defaults'
    replay flags a cell ``SHORT`` when its gap is under its target (a same-language question +0.005, the rest
    −0.005) and ends with each model's cells, SHORT and MISMATCH cells (the synthetic e5 phases 0.5: its replayed
    hybrid 0.6262 is a MISMATCH; USE's BM25 set perfect: its replayed 1.0 is OK and 0 over the best leg, SHORT)."""
    e5, use = _capture(tmp_path)
    with use.open("rb") as f:
        cells = pickle.load(f)  # noqa: S301 (the capture this test wrote)
    cells["detail-ru"]["phases"] = {"lexical": 1.0, "dense": 0.5, "hybrid": 1.0}  # BM25 already perfect: gap 0
    with use.open("wb") as f:
        pickle.dump(cells, f)
    done = _replay(e5, use, "--no-texts")
    assert done.returncode == 0, done.stderr
    assert "use: 1 cells, 1 SHORT, 0 MISMATCH" in done.stdout and "e5: 1 cells, 0 SHORT, 1 MISMATCH" in done.stdout
    rows = re.findall(r"^(\w+) +(\S+) +n= *\d+ lexical \S+ dense \S+ hybrid (\S+) gap (\S+?)( SHORT)? (OK|MISMATCH)",
                      done.stdout, re.MULTILINE)  # fmt: skip
    assert sorted((model, cell) for model, cell, *_ in rows) == [("e5", "question-en"), ("use", "detail-ru")]
    for model, _, hybrid, gap, short, same in rows:
        best, eval_hybrid = (1.0, 1.0) if model == "use" else (0.5, 0.5)
        assert float(gap) == pytest.approx(float(hybrid) - best, abs=1e-4)
        assert bool(short) == (float(gap) < 0.005) and (same == "OK") == (abs(float(hybrid) - eval_hybrid) < 6e-5)
