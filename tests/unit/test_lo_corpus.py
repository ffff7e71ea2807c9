"""The committed LibreOffice Help corpus (eval/lo/) and its query classes (eval/classes-lo.yaml): the HTML converter
on small snippets (every element it reads), the help index's entries as queries, labels that name notes that exist,
known items held by every note they name, and exactly what eval/make_lo_corpus.py builds from the two .deb files
(that check skips when they are not here)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from kbsearch_tools.evaluate import load_classes
from kbsearch_tools.metrics import load_queries
from tests.conftest import ROOT
from tests.unit.test_man_corpus import assert_committed_is_built, assert_labels_hold

MANIFEST = ROOT / "eval" / "classes-lo.yaml"
CORPUS = ROOT / "eval" / "lo"
HEAD = (
    "<!DOCTYPE html><html><head><title>Head title</title><script>var x = 1;</script></head><body>"
    '<header id="TopLeftHeader"><a href="x"><p>LibreOffice 7.4 Help</p></a></header>'
    '<aside class="leftside"><div id="Index"><nav class="index"></nav></div></aside>'
    '<div id="DisplayArea" itemprop="softwareHelp">'
    '<a name="bm_id1"></a><meta itemprop="keywords" content="objects,anchoring options">'
    '<h1 id="hd_1"><a name="demo"></a>Demo Page</h1>'
)
TAIL = (
    '</div><div id="SearchFrame"></div><footer><p>This page is: /text/swriter/guide/demo.xhp</p></footer></body></html>'
)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_lo_corpus", ROOT / "eval" / "make_lo_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_lo_corpus"] = module
    spec.loader.exec_module(module)
    return module


def _convert(body: str, app: str = "swriter") -> tuple[ModuleType, Any]:
    module = _script()
    return module, module.parse_page(HEAD + body + TAIL, app, f"{app}-demo")


def _manifest() -> list[dict[str, str]]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


# -- the converter ---------------------------------------------------------------------------------------------------
def test_the_title_is_the_h1_and_only_the_display_area_is_the_body() -> None:
    _, page = _convert('<p class="paragraph">Body text.</p>')
    assert page.id == "swriter-demo" and page.title == "Demo Page"
    assert page.body == ["Body text."]  # no header, index, keywords, footer, script


def test_headings_paragraphs_lists_and_tables() -> None:
    body = (
        '<h2>Moving</h2><p class="paragraph">one</p><h3>Inner</h3>'
        '<ol><li><p class="listitem">Open it.</p></li><li><p class="listitem">Close it.</p></li></ol>'
        '<ul><li><p class="listitem">apple</p></li><li>pear</li></ul>'
        '<table border="1"><tr><th><p class="tableheadintable">Anchoring</p></th><th><p>Effect</p></th></tr>'
        '<tr><td><p class="tablecontentintable">As character</p></td><td><p>Anchors it.</p><p>Centers it.</p></td>'
        "</tr></table>"
    )
    _, page = _convert(body)
    assert page.body == [
        "## Moving", "one", "### Inner", "1. Open it.", "2. Close it.", "- apple", "- pear",
        "Anchoring | Effect\nAs character | Anchors it. Centers it.",
    ]  # fmt: skip


def test_notes_keep_their_text_not_their_icon_and_code_is_fenced_and_dedented() -> None:
    body = (
        '<div class="note"><div class="noteicon"><img src="note.svg" alt="note"></div>'
        '<div class="notetext"><p>Objects stay on their page.</p></div></div>'
        '<div class="tip"><div class="noteicon"><img src="tip.svg" alt="tip"></div>'
        '<div class="notetext"><p>A tip.</p></div></div>'
        '<div class="bascode"><pre><code class="language-visual-basic">\n    Sub Main\n        Print 1\n    End Sub\n'
        "</code></pre></div>"
    )
    _, page = _convert(body)
    assert page.body == ["Objects stay on their page.", "A tip.", "```\nSub Main\n    Print 1\nEnd Sub\n```"]
    assert "Sub Main" in page.identifiers


def test_inline_markup_is_its_text_and_marked_identifiers_are_kept() -> None:
    body = (
        '<p class="paragraph">Choose <span class="menuitem">Format - Character</span>, press '
        '<span class="keycode">Ctrl+F6</span>, type <span class="literal">=SUM(A1:A3)</span> in the '
        '<span class="emph">Input line</span> of <span class="emph">Calc</span>; see '
        '<a target="_top" href="en-US/text/shared/01/05260000.html"><span class="menuitem">Anchor</span></a>'
        '<img src="x.png" alt="an image">.</p>'
    )
    _, page = _convert(body)
    assert page.body == [
        "Choose Format - Character, press Ctrl+F6, type =SUM(A1:A3) in the Input line of Calc; see Anchor."
    ]
    assert {"Format - Character", "Ctrl+F6", "=SUM(A1:A3)", "Input line", "Anchor"} <= set(page.identifiers)
    assert "Calc" not in page.identifiers  # a one-word emphasis is not an identifier


def _switch(kind: str, branches: str) -> str:
    return f'<p class="paragraph">Choose <span class="{kind}">{branches}</span> now.</p>'


def test_a_switch_shows_the_branch_a_linux_user_of_the_page_s_application_sees() -> None:
    system = (
        '<span hidden="true" id="MACtext_1" class="MAC">LibreOffice - Preferences</span>'
        '<span hidden="true" id="defaulttext_1">Tools - Options</span>'
    )
    unix = '<span hidden="true" class="WIN">Win</span><span hidden="true" class="UNIX">Unix</span><span id="defaultx">Other</span>'
    app = (
        '<span hidden="true" id="IMPRESStext_1" class="IMPRESS">Slide</span>'
        '<span hidden="true" id="WRITERtext_1" class="WRITER">Writer page</span>'
        '<span hidden="true" id="defaulttext_2">Page</span>'
    )
    assert _convert(_switch("switchinline", system))[1].body == ["Choose Tools - Options now."]
    assert _convert(_switch("switchinline", unix))[1].body == ["Choose Unix now."]
    assert _convert(_switch("switchinline", app), "swriter")[1].body == ["Choose Writer page now."]
    assert _convert(_switch("switchinline", app), "simpress")[1].body == ["Choose Slide now."]
    assert _convert(_switch("switchinline", app), "shared")[1].body == ["Choose Page now."]
    block = '<span class="switch"><span hidden="true" class="CALC"><div class="embedded"><p>Calc only.</p></div></span></span>'
    assert _convert(block + '<p class="paragraph">After.</p>', "swriter")[1].body == ["After."]
    assert _convert(block, "scalc")[1].body == ["Calc only."]


def test_the_related_topics_and_everything_after_them_are_dropped() -> None:
    related = (
        '<p class="paragraph">Kept.</p><div class="relatedtopics"><p class="related"><span class="emph">Related '
        'Topics</span></p><div class="relatedbody"><div class="embedded"><p class="embedded"><a href="x.html">Frames'
        "</a></p></div></div></div>"
    )
    _, page = _convert(related)
    assert page.body == ["Kept."]
    loose = (  # the heading paragraph in its own div, the links as its siblings (sdraw/guide/layer_move)
        '<div><p class="paragraph">Kept too.</p><p class="related"><span class="emph">Related Topics</span></p></div>'
        '<div class="embedded"><p class="embedded"><a href="layers.html">About Layers</a></p></div>'
    )
    _, page = _convert(loose)
    assert page.body == ["Kept too."]


def test_the_index_entries_become_queries_of_the_guide_pages_they_point_to() -> None:
    module = _script()
    bookmarks = (
        "var bookmarks = [\n"
        '{url:"en-US/text/swriter/guide/anchor_object.html?DbPAR=WRITER#bm_id3147828", app:"WRITER", '
        'text:"objects -- anchoring options"},\n'
        '{url:"en-US/text/swriter/guide/anchor_object.html?DbPAR=WRITER#bm_id3147828", app:"WRITER", '
        'text:"positioning -- objects (guide)"},\n'
        '{url:"en-US/text/swriter/01/05150000.html?DbPAR=WRITER#bm_id3153925", app:"WRITER", '
        'text:"AutoCorrect function -- text documents"},\n'
        '{url:"en-US/text/scalc/guide/autofilter.html?DbPAR=CALC#bm_id3156423", app:"CALC", text:"filters--  AutoFilter"}\n'
        "];"
    )
    assert module.index_entries(bookmarks) == {
        "swriter-anchor_object": {"objects anchoring options", "positioning objects (guide)"},
        "scalc-autofilter": {"filters AutoFilter"},
    }  # a page that is not a guide page (01/05150000) is not in the corpus


def test_an_index_entry_s_character_references_are_the_text_a_reader_sees() -> None:
    """bookmarks.js writes a quote in an entry as ``&#34;``: read raw, "34" became a query's identifier (session 33's
    C3 pinned notes holding the number 34 for it)."""
    module = _script()
    bookmarks = (
        '{url:"ru/text/scalc/guide/multioperation.html?DbPAR=CALC#bm_id3147559", app:"CALC", '
        'text:"операции &#34;что если&#34; -- две переменные"},\n'
        '{url:"ru/text/swriter/guide/finding.html?DbPAR=WRITER#bm_id1", app:"WRITER", '
        'text:"объекты -- поиск в окне &quot;Навигатор&quot; &amp; &#x41;"}'
    )
    assert module.index_entries(bookmarks) == {
        "scalc-multioperation": {'операции "что если" две переменные'},
        "swriter-finding": {'объекты поиск в окне "Навигатор" & A'},
    }


def test_keyword_queries_label_every_page_of_an_entry_and_keep_one_to_three() -> None:
    module = _script()
    meta = {
        f"p{n}": {"index": {"en": ["shared entry"] * (n < 4) + [f"own {n}"], "ru": ["общая"] * (n < 2) + ["Latin only"]}}
        for n in range(5)
    }  # fmt: skip
    en = {q["query"]: q["relevant"] for q in module.keywords(meta, "en")}
    assert en == {f"own {n}": [f"p{n}.md"] for n in range(5)}  # "shared entry" points to 4 pages: dropped
    ru = {q["query"]: q["relevant"] for q in module.keywords(meta, "ru")}
    assert ru == {"общая": ["p0.md", "p1.md"]}  # an entry with no Cyrillic letter is untranslated: dropped


# -- the committed corpus and classes --------------------------------------------------------------------------------
def test_the_eval_reads_every_lo_class_and_each_is_big_enough() -> None:
    classes, skipped = load_classes(MANIFEST, ROOT)
    assert not skipped
    names = {c.name for c in classes}
    generated = {f"lo-{k}" for k in ("keyword-en", "keyword-ru", "known-item-en", "known-item-ru",
                                     "cross-en-to-ru", "cross-ru-to-en")}  # fmt: skip
    assert generated <= names <= generated | {"lo-question-en", "lo-question-ru"}
    for c in classes:
        assert len(c.queries) >= (20 if "question" in c.name else 70), c.name


def test_lo_labels_name_existing_notes_and_known_items_are_in_them() -> None:
    assert_labels_hold(_manifest())


def test_lo_notes_are_paired_licensed_and_hold_no_html_or_related_topics() -> None:
    en, ru = ({p.name for p in (CORPUS / half).glob("*.md")} for half in ("en", "ru"))
    assert en == ru and len(en) >= 300
    pages = yaml.safe_load((CORPUS / "pages.yaml").read_text(encoding="utf-8"))
    assert {f"{name}.md" for name in pages} == en
    for half in ("en", "ru"):
        for path in (CORPUS / half).glob("*.md"):
            text = path.read_text(encoding="utf-8")
            assert "\nlicense: MPL-2.0\n" in text, path
            assert not re.search(r"</?(p|div|span|a|img|br|meta|h\d)[ >/]", text), path  # no HTML left
            assert "Related Topics" not in text and "\n\nСм. также\n" not in text, path


_REFERENCE = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def test_no_corpus_s_committed_query_or_lo_index_entry_holds_an_html_character_reference() -> None:
    """Every corpus's query sets (each ``eval/classes*.yaml``) and LibreOffice's index entries: a query is the text a
    reader types, never ``&#34;``."""
    held = []
    listed = [e for m in sorted((ROOT / "eval").glob("classes*.yaml")) for e in yaml.safe_load(m.read_text("utf-8"))]
    assert len(listed) >= 50  # read whether its corpus is built or not (the bilingual KB's is not committed)
    for entry in listed:
        held += [
            f"{entry['class']}: {q.query}" for q in load_queries(ROOT / entry["queries"]) if _REFERENCE.search(q.query)
        ]
    pages = yaml.safe_load((CORPUS / "pages.yaml").read_text(encoding="utf-8"))
    held += [f"{pid}: {e}" for pid, p in pages.items() for lang in ("en", "ru") for e in p["index"][lang]
             if _REFERENCE.search(e)]  # fmt: skip
    assert not held


def test_the_committed_lo_query_sets_are_what_the_script_builds_from_pages_yaml() -> None:
    """The generated classes from the committed pages.yaml and notes (what a rebuild writes after ``build_corpus``;
    runs without the .deb files)."""
    module = _script()
    committed = {m["class"]: load_queries(ROOT / m["queries"]) for m in _manifest()}
    for name, items in module.query_sets(CORPUS).items():
        built = [(i["query"], set(i["relevant"])) for i in items]
        assert [(q.query, q.relevant) for q in committed[name]] == built, name


def test_lo_cross_queries_are_the_titles_and_label_every_page_of_one() -> None:
    pages = yaml.safe_load((CORPUS / "pages.yaml").read_text(encoding="utf-8"))
    sets = {m["class"]: load_queries(ROOT / m["queries"]) for m in _manifest()}
    for lang, other in (("en", "ru"), ("ru", "en")):
        name = f"lo-cross-{lang}-to-{other}"
        assert len(sets[name]) == len({p["title"][lang] for p in pages.values()})
        for q in sets[name]:
            assert q.relevant == {f"{s}.md" for s, p in pages.items() if p["title"][lang] == q.query}, q.query


def test_the_lo_corpus_is_what_the_script_builds() -> None:
    module = _script()
    debs = Path(module.DEFAULT_DEBS)
    missing = [deb for deb in module.DEBS.values() if not (debs / deb).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in {debs} (apt-get download libreoffice-help-en-us libreoffice-help-ru)")
    assert_committed_is_built(module, CORPUS, module.build_corpus(debs), "pages.yaml")
