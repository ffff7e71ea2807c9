"""Build the cross-lingual query sets from the Obsidian help vault (../shared/kb/obsidian-help).

Its ``en/`` and ``ru/`` halves are the same notes, paired by the frontmatter ``permalink``. For every pair:
the English note's ``description`` (or, when it has none, its title) is a query whose one relevant note is the
Russian note (``obsidian-help-en-to-ru.yaml``, searched over ``ru/``), and the other way round
(``obsidian-help-ru-to-en.yaml``, over ``en/``). The queries are the vault's own text, not hand-written
questions: descriptions are one-sentence summaries, titles are keyword queries; ``kind`` says which.

    .venv/bin/python eval/make_crosslingual.py [VAULT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from kbsearch.notes import parse_note, split_frontmatter

HERE = Path(__file__).resolve().parent
DEFAULT_VAULT = HERE.parent.parent / "shared" / "kb" / "obsidian-help"


def notes_by_permalink(half: Path) -> dict[str, tuple[str, str, str]]:
    """permalink → (path relative to the half, description or "", title)."""
    out: dict[str, tuple[str, str, str]] = {}
    for path in sorted(half.rglob("*.md")):
        rel = path.relative_to(half).as_posix()
        raw = path.read_bytes()
        meta, _ = split_frontmatter(raw.decode("utf-8-sig"))
        permalink = meta.get("permalink") if isinstance(meta, dict) else None
        if not isinstance(permalink, str) or permalink in out:
            continue
        description = meta.get("description")
        title = parse_note(rel, raw).title
        out[permalink] = (rel, " ".join(str(description).split()) if isinstance(description, str) else "", title)
    return out


def build(vault: Path) -> dict[str, list[dict[str, object]]]:
    en, ru = notes_by_permalink(vault / "en"), notes_by_permalink(vault / "ru")
    sets: dict[str, list[dict[str, object]]] = {"en-to-ru": [], "ru-to-en": []}
    for permalink in sorted(set(en) & set(ru)):
        for name, (source, target) in (("en-to-ru", (en, ru)), ("ru-to-en", (ru, en))):
            _, description, title = source[permalink]
            sets[name].append({"query": description or title, "kind": "description" if description else "title",
                               "relevant": [target[permalink][0]], "permalink": permalink})  # fmt: skip
    return sets


def main() -> int:
    vault = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_VAULT
    for name, items in build(vault).items():
        out = HERE / f"obsidian-help-{name}.yaml"
        header = (f"# {len(items)} cross-lingual queries ({name}) over the Obsidian help vault, made by "
                  "eval/make_crosslingual.py: the source note's description (or title) → the paired note.\n")  # fmt: skip
        out.write_text(header + yaml.safe_dump(items, allow_unicode=True, sort_keys=False, width=1000), "utf-8")
        print(f"{out.name}: {len(items)} queries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
