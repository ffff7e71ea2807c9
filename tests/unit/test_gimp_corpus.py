"""The committed GIMP manual corpus (eval/gimp/) and its query classes (eval/classes-gimp.yaml): the page splitter on
a small snippet of GIMP's DocBook (one note a page, its subsections as headings, key combinations and menu items as
identifiers), labels that name notes that exist, known items held by every note they name, and exactly what
eval/make_gimp_corpus.py builds from the two .deb files (that check skips when they are not here)."""

from __future__ import annotations

import importlib
import re
import sys

import pytest
import yaml

from tests.conftest import ROOT
from tests.unit.test_debdoc_corpus import assert_classes_read, assert_cross_and_questions
from tests.unit.test_man_corpus import assert_committed_is_built, assert_labels_hold

MANIFEST = ROOT / "eval" / "classes-gimp.yaml"
CORPUS = ROOT / "eval" / "gimp"

PAGE = (  # gimp-help-en's gimp-filter-red-eye-removal.html and gimp-layer-new.html, shortened
    '<html><body><div class="navheader"><table><tr><th>4.6. Red Eye Removal</th></tr></table></div>'
    '<div class="sect2"><div class="titlepage"><div><div><h3 class="title"><a id="gimp-filter-red-eye-removal"></a>'
    "4.6. Red Eye Removal</h3></div></div></div>"
    '<a id="idm36786" class="indexterm"></a><p>Removes red eyes.</p>'
    '<div class="sect3"><div class="titlepage"><div><div><h4 class="title"><a id="idm36811"></a>4.6.2. Activating the'
    ' filter</h4></div></div></div><p>Found under <span class="guimenu">Filters</span> → '
    '<span class="guisubmenu">Enhance</span> → <span class="guimenuitem">Red Eye Removal…</span>, or press '
    '<span class="keycap"><strong>Shift</strong></span>+<span class="keycap"><strong>Ctrl</strong></span>+'
    '<span class="keycap"><strong>J</strong></span>; <span class="keycap"><strong>Tab</strong></span> alone hides the'
    " docks.</p></div>"
    '<div class="sect3"><div class="titlepage"><div><div><h4 class="title"><a id="idm36818"></a>4.6.3. Options</h4>'
    '</div></div></div><div class="variablelist"><dl class="variablelist"><dt><span class="term">'
    '<span class="guilabel">Threshold</span></span></dt><dd><p>From 0 to 100.</p></dd></dl></div></div></div>'
    '<div class="navfooter"><a href="https://gitlab.gnome.org/GNOME/gimp-help/issues" class="reportbug">'
    "Report a documentation error</a></div></body></html>"
)


sys.path.insert(0, str(ROOT / "eval"))  # the corpus scripts import each other by name
script = importlib.import_module("make_gimp_corpus")
MANIFEST_ENTRIES: list[dict[str, str]] = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


# -- the page splitter -----------------------------------------------------------------------------------------------
def test_a_page_is_one_note_with_its_subsections_as_headings() -> None:
    page = script.parse_page(PAGE)
    assert (page.id, page.title) == ("gimp-filter-red-eye-removal", "Red Eye Removal")  # no "4.6."
    assert page.body == [
        "Removes red eyes.",
        "## Activating the filter",
        "Found under Filters → Enhance → Red Eye Removal…, or press Shift+Ctrl+J; Tab alone hides the docks.",
        "## Options",
        "Threshold",
        "From 0 to 100.",
    ]
    assert "Report a documentation error" not in "\n".join(page.body)  # the navigation footer is not the text


def test_menu_items_labels_and_key_combinations_are_identifiers_single_keys_not() -> None:
    idents = set(script.parse_page(PAGE).identifiers)
    assert {"Filters", "Enhance", "Red Eye Removal…", "Threshold", "Shift+Ctrl+J"} <= idents
    assert not idents & {"Tab", "Shift", "J"}  # a key alone is text; a combination is one identifier


def test_a_page_without_a_section_is_no_note() -> None:
    assert script.parse_page('<html><body><div class="book"><p>Index</p></div></body></html>') is None


# -- the committed corpus and classes --------------------------------------------------------------------------------
def test_the_eval_reads_every_gimp_class_and_each_is_big_enough() -> None:
    assert_classes_read(MANIFEST, "gimp", 90, 40)


def test_gimp_labels_name_existing_notes_and_known_items_are_in_them() -> None:
    assert_labels_hold(MANIFEST_ENTRIES)


def test_gimp_notes_are_paired_licensed_and_hold_no_html() -> None:
    en, ru = ({p.name for p in (CORPUS / half).glob("*.md")} for half in ("en", "ru"))
    assert en == ru and len(en) == script.SIZE
    pages = yaml.safe_load((CORPUS / "pages.yaml").read_text(encoding="utf-8"))
    assert {f"{name}.md" for name in pages} == en
    for half in ("en", "ru"):
        for path in (CORPUS / half).glob("*.md"):
            text = path.read_text(encoding="utf-8")
            assert f"\npage: {path.stem}\n" in text and "\nmanual: gimp\n" in text, path
            assert f"\nlang: {half}\n" in text and "\nlicense: GFDL-1.2+\n" in text, path
            assert not re.search(r"</(p|div|span|a|code|strong|h\d)>|<[a-z]+ (class|id)=", text), path


def test_gimp_cross_queries_are_the_titles_and_the_questions_the_committed_hand_written_ones() -> None:
    assert_cross_and_questions(CORPUS, MANIFEST_ENTRIES, "gimp")
    for lang in ("en", "ru"):  # 40 a language, none dropped
        assert len(yaml.safe_load((CORPUS / "questions" / f"gimp-questions-{lang}.yaml").read_text("utf-8"))) == 40


def test_the_gimp_corpus_is_what_the_script_builds() -> None:
    debs = ROOT / ".kbsearch" / "debs"  # make_debdoc_corpus.DEFAULT_DEBS, the scripts' default
    missing = [deb for deb in script.MANUAL.debs.values() if not (debs / deb).is_file()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in {debs} (apt-get download them: eval/gimp/README.md)")
    assert_committed_is_built(script, CORPUS, script.build_corpus(debs), "pages.yaml")
