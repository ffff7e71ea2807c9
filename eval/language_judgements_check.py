"""How each mixed-script query shape is judged: ``lexical.query_language`` and the words set aside as identifiers
(``identifier_terms``), one line per query (rev36a's table "Judgements by shape" in EVAL.md; committed in round 37
by tidy37: the probe had stayed in ``/tmp``). Run it on two trees and compare the lines.

    PYTHONPATH=layers/kbsearch .venv/bin/python eval/language_judgements_check.py
    PYTHONPATH=<other tree>/layers/kbsearch .venv/bin/python eval/language_judgements_check.py
"""

from __future__ import annotations

from kbsearch.lexical import identifier_terms, query_language

QUERIES = [
    "How do I use Синхронизация",
    "How to use Синхронизация",
    "Where is Настройки",
    "How do I open Хранилище in Obsidian",
    "Obsidian не открывается",
    "Obsidian не открывает хранилище",
    "Sync не работает",
    "Why does Синхронизация fail",
    "What Is Хранилище",
    "How To Configure Плагины",
    "I can't find Настройки",
    "Can I rename Заметки",
    "Edit Layer Attributes опускать",
    "Kak nastroit sinhronizaciyu",
    "HOW DO I USE Синхронизация",
    "OBSIDIAN не открывается",
    "Obsidian",
    "O'Brien заметки",
    "Jean-Luc заметки",
    "заметки O'Brien",
    "Édition заметки",
    "Édition des notes Заметки",
    "ÄÖÜ заметки",
    "Win10 заметки",
    "Word’s заметки",
    "Word's заметки",
    "Does Obsidian support Канбан",
    "Is Publish платный",
    "Please help Синхронизация",
    "Hello, как настроить Sync",
    "Open Settings → Синхронизация",
    "Ok, как открыть",
    "A заметки",
    "Сopy file",
    "Нow do I",
    "Export to PDF не работает",
    "Dataview запрос не работает",
    "My vault не синхронизируется",
    "The Graph view показывает",
    "Using Canvas для заметок",
    "синхронизация in Obsidian Sync",
    "How do I use синхронизация",
]


if __name__ == "__main__":
    for query in QUERIES:
        print(f"{query_language(query)!s:4} {sorted(identifier_terms(query))!s:50} {query}")
