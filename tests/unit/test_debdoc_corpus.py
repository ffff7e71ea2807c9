"""The committed Debian documentation corpus (eval/debdoc/) and its query classes (eval/classes-debdoc.yaml): the
section splitter on small snippets of both HTML flavours it reads (Sphinx's and DocBook's), labels that name notes
that exist, known items held by every note they name, and exactly what eval/make_debdoc_corpus.py builds from the six
.deb files (that check skips when they are not here)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from kbsearch_tools.evaluate import load_classes
from kbsearch_tools.metrics import load_queries
from tests.conftest import ROOT
from tests.unit.test_man_corpus import assert_committed_is_built, assert_labels_hold

MANIFEST = ROOT / "eval" / "classes-debdoc.yaml"
CORPUS = ROOT / "eval" / "debdoc"

SPHINX = (  # developers-reference's pkgs.html, shortened
    '<html><head><script>var x = 1;</script></head><body><div class="body" role="main">'
    '<section id="managing-packages"><span id="pkgs"></span>'
    '<h1><span class="section-number">5. </span>Managing Packages<a class="headerlink" href="#managing-packages">¶</a></h1>'
    "<p>This chapter is about packages.</p>"
    '<section id="new-packages"><span id="newpackage"></span>'
    '<h2><span class="section-number">5.1. </span>New packages<a class="headerlink" href="#new-packages">¶</a></h2>'
    '<p>File a bug against <code class="docutils literal notranslate"><span class="pre">wnpp</span></code> first, see '
    '<a class="reference internal" href="beyond-pkging.html#submit-bug"><span class="std std-ref">Bug reporting</span></a>.</p>'
    '<div class="highlight-default notranslate"><div class="highlight"><pre><span></span>dch -i\n</pre></div></div>'
    "</section></section></div></body></html>"
)
DOCBOOK = (  # debian-faq's pkgtools.en.html, shortened
    '<html><body><div class="chapter"><div class="titlepage"><div><div><h1 class="title"><a id="pkgtools"></a>'
    "Chapter 8. The Debian package management tools</h1></div></div></div>"
    '<div class="toc"><p><strong>Table of Contents</strong></p><dl><dt>8.1. What programs</dt></dl></div>'
    "<p>Tools.</p>"
    '<div class="section"><div class="titlepage"><div><div><h3 class="title"><a id="dpkg"></a>8.1.1. dpkg</h3>'
    '</div></div></div><p>This is the main program. <span class="command"><strong>dpkg</strong></span> has options:'
    '</p><div class="itemizedlist"><ul class="itemizedlist"><li class="listitem"><p>Find out all the options: '
    '<code class="literal">dpkg --help</code>.</p></li><li class="listitem"><p>Look in <code class="filename">'
    "/var/lib/dpkg/info</code>.</p></li></ul></div></div></div></body></html>"
)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_debdoc_corpus", ROOT / "eval" / "make_debdoc_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_debdoc_corpus"] = module
    spec.loader.exec_module(module)
    return module


def _manifest() -> list[dict[str, str]]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


# -- the section splitter --------------------------------------------------------------------------------------------
def test_sphinx_sections_are_split_by_their_id_with_their_own_text_only() -> None:
    sections = {s.id: s for s in _script().parse_sections(SPHINX)}
    assert set(sections) == {"managing-packages", "new-packages"}
    outer, inner = sections["managing-packages"], sections["new-packages"]
    assert (outer.title, outer.body) == ("Managing Packages", ["This chapter is about packages."])  # not 5.1's text
    assert inner.title == "New packages"  # no number, no "¶"
    assert inner.body == ["File a bug against wnpp first, see Bug reporting.", "```\ndch -i\n```"]
    assert {"wnpp", "dch -i"} <= set(inner.identifiers)


def test_docbook_sections_take_the_heading_s_anchor_and_drop_the_toc() -> None:
    sections = {s.id: s for s in _script().parse_sections(DOCBOOK)}
    assert set(sections) == {"pkgtools", "dpkg"}
    chapter, dpkg = sections["pkgtools"], sections["dpkg"]
    assert (chapter.title, chapter.body) == ("The Debian package management tools", ["Tools."])  # no "Chapter 8."
    assert dpkg.title == "dpkg"
    assert dpkg.body == [
        "This is the main program. dpkg has options:",
        "- Find out all the options: dpkg --help.",
        "- Look in /var/lib/dpkg/info.",
    ]
    assert {"dpkg", "dpkg --help", "/var/lib/dpkg/info"} <= set(dpkg.identifiers)  # a command span counts too


def test_a_russian_chapter_heading_loses_its_number() -> None:
    source = DOCBOOK.replace("Chapter 8. The Debian package management tools", "Глава 8. Инструменты")
    assert {s.id: s.title for s in _script().parse_sections(source)}["pkgtools"] == "Инструменты"


# -- the committed corpus and classes --------------------------------------------------------------------------------
def assert_classes_read(manifest: Path, prefix: str, least: int, least_questions: int) -> None:
    """The eval reads every class of a manual corpus's manifest (its known items, titles across languages and
    hand-written questions), each with at least ``least`` queries (``least_questions`` the questions)."""
    classes, skipped = load_classes(manifest, ROOT)
    assert not skipped
    names = {c.name for c in classes}
    assert names == {f"{prefix}-{k}" for k in ("known-item-en", "known-item-ru", "cross-en-to-ru", "cross-ru-to-en",
                                                "question-en", "question-ru")}  # fmt: skip
    for c in classes:
        assert len(c.queries) >= (least_questions if "question" in c.name else least), c.name


def test_the_eval_reads_every_debdoc_class_and_each_is_big_enough() -> None:
    assert_classes_read(MANIFEST, "debdoc", 150, 35)


def test_debdoc_labels_name_existing_notes_and_known_items_are_in_them() -> None:
    assert_labels_hold(_manifest())


def test_debdoc_notes_are_paired_licensed_and_hold_no_html() -> None:
    en, ru = ({p.name for p in (CORPUS / half).glob("*.md")} for half in ("en", "ru"))
    assert en == ru and len(en) >= 300
    pages = yaml.safe_load((CORPUS / "pages.yaml").read_text(encoding="utf-8"))
    assert {f"{name}.md" for name in pages} == en
    for half in ("en", "ru"):
        for path in (CORPUS / half).glob("*.md"):
            text = path.read_text(encoding="utf-8")
            manual = path.name.split("-", 1)[0]
            wanted = "Debian-FAQ-notice" if manual == "faq" else "GPL-2+"
            assert f"\nmanual: {manual}\n" in text and f"\nlicense: {wanted}\n" in text, path
            # no markup left (maint-watch's text quotes "<a href=...>": text, not a tag)
            assert not re.search(r"</(p|div|span|a|code|section|h\d)>|<[a-z]+ (class|id)=", text), path
            assert "¶" not in text, path


def assert_cross_and_questions(corpus: Path, manifest: list[dict[str, str]], prefix: str) -> None:
    """A manual corpus's cross classes are its notes' titles (``pages.yaml``), each labelled with every note of that
    title; its question classes are the committed hand-written ones (``questions/<prefix>-questions-<lang>.yaml``)."""
    pages = yaml.safe_load((corpus / "pages.yaml").read_text(encoding="utf-8"))
    sets = {m["class"]: load_queries(ROOT / m["queries"]) for m in manifest}
    for lang, other in (("en", "ru"), ("ru", "en")):
        name = f"{prefix}-cross-{lang}-to-{other}"
        assert len(sets[name]) == len({p["title"][lang] for p in pages.values()})
        for q in sets[name]:
            assert q.relevant == {f"{s}.md" for s, p in pages.items() if p["title"][lang] == q.query}, q.query
    for lang in ("en", "ru"):
        source = yaml.safe_load((corpus / "questions" / f"{prefix}-questions-{lang}.yaml").read_text(encoding="utf-8"))
        assert [(q.query, q.relevant) for q in sets[f"{prefix}-question-{lang}"]] == [
            (item["query"], {f"{p}.md" for p in item["relevant"]}) for item in source
        ]


def test_debdoc_cross_queries_are_the_titles_and_the_questions_the_committed_hand_written_ones() -> None:
    assert_cross_and_questions(CORPUS, _manifest(), "debdoc")


def test_the_debdoc_corpus_is_what_the_script_builds() -> None:
    module = _script()
    debs = Path(module.DEFAULT_DEBS)
    missing = [deb for m in module.MANUALS for deb in m.debs.values() if not (debs / deb).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in {debs} (apt-get download them: eval/debdoc/README.md)")
    assert_committed_is_built(module, CORPUS, module.build_corpus(debs), "pages.yaml")
