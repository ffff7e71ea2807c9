"""How each mixed-script query shape is judged: ``lexical.query_language`` and the words set aside as identifiers
(``identifier_terms``), one line per query (rev36a's table "Judgements by shape" in EVAL.md; committed in round 37
by tidy37: the probe had stayed in ``/tmp``). Run it on two trees and compare the lines.

    PYTHONPATH=layers/kbsearch .venv/bin/python eval/language_judgements_check.py
    PYTHONPATH=<other tree>/layers/kbsearch .venv/bin/python eval/language_judgements_check.py

``--set rev37a``: the shapes session 37's review (rev37a) built for lang37's rule, where no capture reaches (EVAL.md,
"Session 37 review: the language rule read cold"), each line led by the judgement a reader gives it (``ru``, ``en``,
``?`` where either is fair) and ``WRONG`` where the tree's differs.
"""

from __future__ import annotations

import argparse

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


#: rev37a's shapes and the judgement a reader gives each: Russian sentences with a capitalised Russian word after an
#: English one, English in capitals, acronyms that are function words, Title Case Russian, an English phrase or a
#: quoted label holding "in"/"on"/"of" inside a Russian sentence.
REV37A = [
    ("ru", "Obsidian Синхронизация не работает"), ("ru", "Git Москва офис"), ("ru", "Notion Импорт не работает"),
    ("ru", "Obsidian как настроить синхронизацию"), ("en", "HOW TO RESET PASSWORD"), ("ru", "IT отдел"),
    ("ru", "IT OR HR отдел"), ("ru", "IT AND OPS регламент"), ("ru", "IT AS A SERVICE договор"),
    ("ru", "AS IS процессы"), ("ru", "IF ELSE синтаксис"), ("ru", "IT ON DUTY график"), ("ru", "DO NOT DISTURB режим"),
    ("ru", "It Отдел Москва"), ("en", "What is Ёлка"), ("ru", "Где Ёлка"), ("ru", "Как Настроить Синхронизацию"),
    ("ru", "Как Настроить Синхронизацию on a Mac"), ("ru", "Как Настроить Синхронизацию in Obsidian"),
    ("ru", 'как включить "Sync in background"'), ("ru", 'Где Кнопка "Open in new tab"'),
    ("ru", 'Где Включить "Open in new tab"'), ("ru", "Ошибка out of memory При Индексации"),
    ("ru", "ошибка out of memory в Москве"), ("ru", "Сервис Яндекс Карты a Google Maps"),
    ("?", "Яндекс Диск out of sync"), ("?", "Москва vs Питер is better"), ("en", "Where is Настройки"),
    ("en", "WHERE IS Настройки"), ("en", "HOW DO I USE Синхронизация"), ("?", "HOW TO НАСТРОИТЬ SYNC"),
    ("ru", "Почему Синхронизация не работает on iPhone"), ("ru", "Where is the vault? Настройки не открываются"),
    ("ru", "Do Not Disturb Режим Не Работает"), ("en", "Sync in Obsidian Москва"),
]  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=("rev36a", "rev37a"), default="rev36a", help="whose query shapes")
    if parser.parse_args().set == "rev37a":
        for reader, query in REV37A:
            judged = query_language(query)
            verdict = "" if reader in ("?", judged) else "WRONG"
            print(f"{reader:2} {judged!s:4} {verdict:5} {sorted(identifier_terms(query))!s:40} {query}")
    else:
        for query in QUERIES:
            print(f"{query_language(query)!s:4} {sorted(identifier_terms(query))!s:50} {query}")
