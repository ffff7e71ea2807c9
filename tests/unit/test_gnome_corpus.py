"""The committed GNOME Help corpus (eval/gnome/) and its query classes (eval/classes-gnome.yaml): the Mallard
converter on small snippets (every element it reads), labels that name notes that exist, known items held by every
note they name, no <desc> left in a note, and exactly what eval/make_gnome_corpus.py builds from the .deb (that
check skips when the .deb is not here)."""

from __future__ import annotations

import importlib.util
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

MANIFEST = ROOT / "eval" / "classes-gnome.yaml"
CORPUS = ROOT / "eval" / "gnome"
HEAD = (
    '<page xmlns="http://projectmallard.org/1.0/" xmlns:if="http://projectmallard.org/if/1.0/" '
    'xmlns:mal="http://projectmallard.org/1.0/" type="topic" id="demo">'
)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_gnome_corpus", ROOT / "eval" / "make_gnome_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_gnome_corpus"] = module
    spec.loader.exec_module(module)
    return module


def _convert(body: str, info: str = "", titles: dict[str, str] | None = None) -> tuple[ModuleType, Any]:
    module = _script()
    source = f"{HEAD}<info>{info}</info><title>Demo page</title>{body}</page>".encode()
    return module, module.parse_page(source, titles or {})


def _manifest() -> list[dict[str, str]]:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


# -- the converter ---------------------------------------------------------------------------------------------------
def test_title_and_desc_are_read_and_info_is_not_the_body() -> None:
    info = (
        '<link type="guide" xref="keyboard"/><revision version="gnome:42" date="2022-04-05"/>'
        "<credit type='author'><name>Michael Hill</name><email>m@example.org</email></credit>"
        '<include href="legal.xml" xmlns="http://www.w3.org/2001/XInclude"/>'
        "<desc>Define or change keyboard shortcuts in <gui>Keyboard</gui> settings.</desc>"
        '<mal:credit type="translator copyright"><mal:name>Александр Прокудин</mal:name></mal:credit>'
    )
    _, page = _convert("<p>Body text.</p>", info)
    assert page.id == "demo" and page.type == "topic" and page.title == "Demo page"
    assert page.desc == "Define or change keyboard shortcuts in Keyboard settings."
    assert page.body == ["Body text."]  # no credits, translators, revisions, links, desc


def test_sections_become_headings_and_nested_sections_level_three() -> None:
    body = (
        '<section id="a"><title>First</title><p>one</p>'
        '<section id="b"><title>Inner</title><p>two</p></section></section>'
    )
    _, page = _convert(body)
    assert page.body == ["## First", "one", "### Inner", "two"]


def test_lists_steps_terms_notes_and_tables() -> None:
    body = (
        "<list><item><p>apple</p></item><item><p>pear</p></item></list>"
        "<steps><item><p>Open it.</p></item><item><p>Close it.</p></item></steps>"
        "<terms><item><title>Wi-Fi</title><p>radio</p></item></terms>"
        '<note style="tip"><p>A tip.</p></note>'
        "<table><title>Keys</title><tr><td><p>Zoom in</p></td><td><p>on</p></td></tr>"
        "<tr><td><p>Zoom out</p></td><td><p>off</p></td></tr></table>"
    )
    _, page = _convert(body)
    assert page.body == [
        "- apple", "- pear", "1. Open it.", "2. Close it.", "- Wi-Fi: radio", "A tip.",
        "Keys\nZoom in | on\nZoom out | off",
    ]  # fmt: skip


def test_inline_markup_is_its_text_code_in_backticks_and_keyseq_joined() -> None:
    body = (
        "<p>Press <keyseq><key>Ctrl</key><key>C</key></keyseq> or <key>Backspace</key> in <gui>Files</gui>, "
        "<app>Nautilus</app>, <em>really</em>; run <cmd>ls -a</cmd> on <file>/etc/fstab</file>, type "
        "<input>yes</input>, see <output>done</output> and <code>x = 1</code>; "
        "<guiseq><gui>Settings</gui><gui>Sound</gui></guiseq>.</p>"
    )
    _, page = _convert(body)
    assert page.body == [
        "Press Ctrl+C or Backspace in Files, Nautilus, really; run `ls -a` on `/etc/fstab`, type `yes`, see "
        "`done` and `x = 1`; Settings ▸ Sound."
    ]
    assert {"Ctrl+C", "Backspace", "ls -a", "/etc/fstab", "yes", "done", "x = 1"} <= set(page.identifiers)
    assert "Files" not in page.identifiers  # a one-word GUI label is not an identifier


def test_code_blocks_are_fenced_as_printed_and_on_lines_of_their_own_inside_a_step() -> None:
    """A ``<screen>`` of prompts and input was written with its inline markup inside the fence (`` `$``gsettings
    ...` ``, shown as such), and a ``<code>`` block after a step's paragraph opened its fence mid-line (`` this:
    ``` ``): Markdown read the block as prose. Now the block is its text as printed, fenced on lines of its own
    indented under the step, and a paragraph after it stays in the step."""
    body = (
        "<screen>\n<output style='prompt'>$ </output><input>gsettings set a b 180</input>\n</screen>"
        "<steps><item><p>Run it.</p></item><item><p>You should see this:</p><code>*-network\n"
        "       description: Wireless</code><p>Then go on.</p></item></steps>"
        "<terms><item><title>Log</title><code>tail -f log</code></item></terms>"
    )
    _, page = _convert(body)
    assert page.body == [
        "```\n$ gsettings set a b 180\n```", "1. Run it.",
        "2. You should see this:\n\n   ```\n   *-network\n          description: Wireless\n   ```\n\n   Then go on.",
        "- Log:\n\n  ```\n  tail -f log\n  ```",
    ]  # fmt: skip
    assert {"$ gsettings set a b 180", "gsettings set a b 180", "*-network"} <= set(page.identifiers)


def test_every_fence_of_the_committed_corpus_is_on_lines_of_its_own_and_holds_no_markup() -> None:
    for note in sorted([*(CORPUS / "en").glob("*.md"), *(CORPUS / "ru").glob("*.md")]):
        lines = note.read_text(encoding="utf-8").splitlines()
        fences = [n for n, line in enumerate(lines) if "```" in line]
        assert all(lines[n].strip() == "```" for n in fences), note
        assert len(fences) % 2 == 0, note
        for start, end in zip(fences[::2], fences[1::2], strict=True):
            assert not any("`" in line for line in lines[start + 1 : end]), note


def test_links_show_their_text_an_empty_xref_its_target_s_title_an_empty_href_its_address() -> None:
    titles = {"net-proxy": "Define proxy settings", "net-proxy#auto": "Automatic"}
    body = (
        '<p><link xref="net-proxy">the proxy page</link>; <link xref="net-proxy"/>; <link xref="net-proxy#auto"/>; '
        '<link href="https://help.gnome.org">GNOME Help</link>; <link href="https://example.org/x"/>.</p>'
    )
    _, page = _convert(body, titles=titles)
    assert page.body == ["the proxy page; Define proxy settings; Automatic; GNOME Help; https://example.org/x."]


def test_media_comments_includes_and_hidden_branches_are_dropped() -> None:
    body = (
        '<comment><p>Editorial remark.</p></comment><media type="image" src="a.png"><p>alt</p></media>'
        '<include href="x.xml" xmlns="http://www.w3.org/2001/XInclude"/><links type="topic"/>'
        '<if:choose><if:when test="platform:gnome-classic"><p>Classic only.</p></if:when>'
        "<if:else><p>Standard GNOME.</p></if:else></if:choose>"
        '<if:choose><if:when test="!platform:gnome-classic"><p>Not classic.</p></if:when>'
        "<if:else><p>Classic.</p></if:else></if:choose>"
        "<!-- a comment --><p>Kept.</p>"
    )
    _, page = _convert(body)
    assert page.body == ["Standard GNOME.", "Not classic.", "Kept."]


def test_a_long_body_is_cut_at_a_paragraph_and_no_heading_is_left_last() -> None:
    module = _script()
    pieces = ["x" * 1000, "y" * 1000, "## Heading", "z" * 1000]
    assert module.cut(pieces) == ["x" * 1000, "y" * 1000]


# -- the committed corpus and classes --------------------------------------------------------------------------------
def test_the_eval_reads_every_gnome_class_and_each_is_big_enough() -> None:
    classes, skipped = load_classes(MANIFEST, ROOT)
    assert not skipped
    names = {c.name for c in classes}
    generated = {f"gnome-{k}" for k in ("known-item-en", "known-item-ru", "describe-en", "describe-ru",
                                        "cross-en-to-ru", "cross-ru-to-en")}  # fmt: skip
    assert generated <= names <= generated | {"gnome-question-en", "gnome-question-ru"}
    for c in classes:
        assert len(c.queries) >= (20 if "question" in c.name else 70), c.name


def test_gnome_labels_name_existing_notes_and_known_items_are_in_them() -> None:
    assert_labels_hold(_manifest())


def test_gnome_notes_are_paired_licensed_and_hold_no_desc() -> None:
    en, ru = ({p.name for p in (CORPUS / half).glob("*.md")} for half in ("en", "ru"))
    assert en == ru and len(en) >= 200
    pages = yaml.safe_load((CORPUS / "pages.yaml").read_text(encoding="utf-8"))
    assert {f"{name}.md" for name in pages} == en
    for half in ("en", "ru"):
        for path in (CORPUS / half).glob("*.md"):
            text = path.read_text(encoding="utf-8")
            assert "\nlicense: CC-BY-SA-3.0\n" in text, path
            first = text.split("\n---\n", 1)[1].strip().split("\n\n", 1)[0]
            assert first != pages[path.stem][half], path  # the desc is the query, not a copy leading the note


def test_gnome_describe_queries_are_the_descs_and_label_every_page_of_one() -> None:
    pages = yaml.safe_load((CORPUS / "pages.yaml").read_text(encoding="utf-8"))
    sets = {m["class"]: load_queries(ROOT / m["queries"]) for m in _manifest()}
    for lang, other in (("en", "ru"), ("ru", "en")):
        for name in (f"gnome-describe-{lang}", f"gnome-cross-{lang}-to-{other}"):
            assert len(sets[name]) == len({p[lang] for p in pages.values()})
            for q in sets[name]:
                assert q.relevant == {f"{s}.md" for s, p in pages.items() if p[lang] == q.query}, q.query


def test_the_gnome_corpus_is_what_the_script_builds() -> None:
    module = _script()
    debs = Path(module.DEFAULT_DEBS)
    if not (debs / module.DEB).is_file():
        pytest.skip(f"{module.DEB} is not in {debs} (apt-get download gnome-user-docs=43.0-2)")
    assert_committed_is_built(module, CORPUS, module.build_corpus(debs), "pages.yaml")


def test_questions_are_copied_as_they_are_and_those_naming_a_missing_page_dropped(tmp_path: Path) -> None:
    module = _script()
    half = tmp_path / "en"
    half.mkdir()
    (half / "net-proxy.md").write_text("---\ntitle: x\n---\n\nbody\n", encoding="utf-8")
    source = tmp_path / "q.yaml"
    source.write_text("- query: 'how do I set a proxy, by hand?'\n  relevant: [net-proxy]\n"
                      "- query: where is the gone page\n  relevant: [no-such-page]\n", encoding="utf-8")  # fmt: skip
    kept, dropped = module.questions(source, half)
    assert kept == [{"query": "how do I set a proxy, by hand?", "kind": "question", "relevant": ["net-proxy.md"]}]
    assert dropped == ["where is the gone page"]
