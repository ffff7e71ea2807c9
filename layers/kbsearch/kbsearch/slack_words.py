"""The words of a Slack answer in the asker's language: Russian for a question the search reads as Russian, English
otherwise. A note's title, snippet, tags and path are shown as they are; only what kb-search itself says (the
acknowledgement, the help, a usage error, "no notes found", the footer, the buttons, the hints, an apology) follows
the question. The language is judged as the search judges a query's (:func:`kbsearch.lexical.query_language`), so
"как задать EMBEDDING_API_KEY" is answered in Russian and "how to set up индексатор" in English.

Standard library only (and :mod:`kbsearch.lexical`, which is too): the acknowledgement imports this module.
"""

from __future__ import annotations

from typing import Protocol

from kbsearch.lexical import query_language


class Unheld(Protocol):
    """A filter value no note holds (:class:`kbsearch.browse.UnheldFilter`, which a part does not import)."""

    @property
    def what(self) -> str: ...
    @property
    def value(self) -> str: ...
    @property
    def meant(self) -> str | None: ...
    @property
    def held(self) -> tuple[str, ...]: ...

    def said(self, option: str, sentence: bool = False) -> str: ...


#: The languages an answer is said in; anything else is said in English.
LANGUAGES = ("en", "ru")
#: What kb-search says when the asker's language cannot be known (rel36): each sentence in every language of
#: :data:`LANGUAGES`, one after the other. A question with no letter at all (`/kb 🙂`, `/kb …`) has no language to
#: judge, and Slack's command carries no locale (users.info's needs a bot token this app does not hold); a
#: button whose value cannot be read carries its answer's language in its block's id (:func:`answer_block_id`),
#: but one from before that has none.
EVERY = "+".join(LANGUAGES)
#: The id of an answer's actions block, which carries the answer's language to its buttons (Slack sends the
#: block_id of a pressed button: the language is known even when the button's value cannot be read).
ANSWER_BLOCK = "kb_answer"

HELP = {
    "en": (
        "*Search the knowledge base*\n"
        "• `{command} <question>`: an answer only you see, with buttons to share it, see more, open a note, or say whether "
        "it helped\n"
        "• `{command} share <question>`: post the answer to the channel\n"
        "• Filters, anywhere in the question: `tag:runbook` (any of the tags, any case, nested ones too; `tag:a,b` or "
        "repeat it), `type:decision`, `status:active`, `in:ru/ранбуки` (a folder), `after:2026-01-01` (updated since); "
        'quote values with spaces: `in:"en/how to"`\n'
        "  e.g. `{command} tag:runbook in:en/runbooks restore a snapshot`\n"
        "• `{command} help`: this message\n"
        "Tips: a few specific words work best (`qdrant snapshot restore`); Russian and English both work "
        "(the answer is in the question's language)."
    ),
    "ru": (
        "*Поиск по базе знаний*\n"
        "• `{command} <вопрос>`: ответ видите только вы, с кнопками: поделиться, ещё результаты, открыть заметку, "
        "оценить ответ\n"
        "• `{command} share <вопрос>`: опубликовать ответ в канале\n"
        "• Фильтры, в любом месте вопроса: `tag:runbook` (любой из тегов, регистр не важен, вложенные тоже; "
        "`tag:a,b` или повторите), `type:decision`, `status:active`, `in:ru/ранбуки` (папка), `after:2026-01-01` "
        '(обновлено после); значение с пробелами в кавычках: `in:"en/how to"` или `in:«ru/как это»`\n'
        "  например, `{command} tag:ранбук in:ru/ранбуки ротация ключей`\n"
        "• `{command} помощь` (или `{command} help`): это сообщение\n"
        "Совет: лучше всего работают несколько точных слов (`восстановление снапшота qdrant`); можно спрашивать "
        "по-русски и по-английски (ответ на языке вопроса)."
    ),
}

#: Everything else kb-search says in Slack, by key; ``{…}`` fields are filled by :func:`say`.
_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "searching": "Searching for “{query}”…",
        "sorry_usage": "Sorry: {error}.",
        "apology": "Sorry, the search for “{query}” failed. Please try again in a minute.",
        "needs_value": "`{key}:` needs a value",
        "given_twice": "`{key}:` given twice",
        "takes_date": "`{key}:` takes a date like 2026-01-01, not “{value}”",
        "needs_folder": "`{key}:` needs a folder",
        "not_a_filter": "`{key}:` is not a filter: did you mean `{meant}:`? (to search for the word itself, leave out "
        "the colon)",
        "word_not_filter": "(`{key}:` is searched as a word, not as a filter; the filter is `{meant}:`)",
        "bad_filter": "bad filter ({problem})",
        "needs_question": "filters need a question to go with them",
        "nothing_to_search": "the question has no letter or digit: nothing to search for",
        "asked_by": "asked by {user}",
        "filters": "filters: {filters}",
        "tag": "tag",
        "type": "type",
        "status": "status",
        "in": "in",
        "after": "after",
        "updated": "updated {date}",
        "no_hits": "No notes found for “{query}”.",
        "no_hits_page": "No notes found on this page for “{query}”.",
        "unshared": "Nothing was posted to the channel (a shared answer holds only the notes the channel may read).",
        "tips": "Try fewer or other words, the other language (Russian ↔ English), fewer filters, or `{command} help`.",
        "result": "result {first}",
        "results": "results {first}–{last}",
        "ms": "{n} ms",
        "s": "{n} s",
        "open": "Open",
        "share": "Share in channel",
        "more": "More results",
        "helpful": "👍 Helpful",
        "not_helpful": "👎 Not helpful",
        "too_long": "This question is too long to carry buttons; ask a shorter one to share it.",
        "notes_one": "{n} note for “{query}”",
        "notes_many": "{n} notes for “{query}”",
        "stale_button": "This button belongs to an answer kb-search cannot read any more; please run `{command}` again.",
        "thanks_up": "Thanks! Marked as helpful 👍",
        "thanks_down": "Thanks! Marked as not helpful 👎: it will help improve search.",
        "vote_failed": "Sorry, your feedback could not be recorded right now. Please try again later.",
        "degraded_expand": "the question was not rephrased (query expansion unavailable)",
        "degraded_embed": "keyword search only (semantic search unavailable)",
        "degraded_embed_mismatch": "keyword search only (the semantic index does not match the embedding model)",
        "degraded_embed_fallback": "semantic search used the backup provider",
        "degraded_rerank": "results are not reranked (reranker unavailable)",
        "degraded_rerank_fallback": "results were reranked by the backup provider",
        "degraded_other": "{stage} unavailable",
    },
    "ru": {
        "searching": "Ищу «{query}»…",
        "sorry_usage": "Не получилось: {error}.",
        "apology": "Извините, поиск «{query}» не удался. Попробуйте ещё раз через минуту.",
        "needs_value": "у `{key}:` нет значения",
        "given_twice": "`{key}:` указан дважды",
        "takes_date": "`{key}:` принимает дату вида 2026-01-01, а не «{value}»",
        "needs_folder": "для `{key}:` нужна папка",
        "not_a_filter": "`{key}:` — не фильтр: может быть, `{meant}:`? (чтобы искать само слово, уберите двоеточие)",
        "word_not_filter": "(`{key}:` ищется как слово, это не фильтр; фильтр пишется `{meant}:`)",
        "bad_filter": "неверный фильтр ({problem})",
        "needs_question": "к фильтрам нужен вопрос",
        "nothing_to_search": "в вопросе нет ни буквы, ни цифры: искать нечего",
        "asked_by": "спросил(а) {user}",
        "filters": "фильтры: {filters}",
        "tag": "тег",
        "type": "тип",
        "status": "статус",
        "in": "в папке",
        "after": "после",
        "updated": "обновлено {date}",
        "no_hits": "По запросу «{query}» заметок не найдено.",
        "no_hits_page": "На этой странице заметок по запросу «{query}» нет.",
        "unshared": "В канал ничего не отправлено (общий ответ содержит только заметки, доступные каналу).",
        "tips": "Попробуйте меньше слов или другие слова, другой язык (русский ↔ английский), меньше фильтров "
        "или `{command} помощь`.",
        "result": "результат {first}",
        "results": "результаты {first}–{last}",
        "ms": "{n} мс",
        "s": "{n} с",
        "open": "Открыть",
        "share": "Поделиться в канале",
        "more": "Ещё результаты",
        "helpful": "👍 Полезно",
        "not_helpful": "👎 Не помогло",
        "too_long": "Вопрос слишком длинный для кнопок; задайте вопрос короче, чтобы поделиться им.",
        "notes_one": "{n} заметка по запросу «{query}»",
        "notes_few": "{n} заметки по запросу «{query}»",
        "notes_many": "{n} заметок по запросу «{query}»",
        "stale_button": "Эта кнопка от ответа, который kb-search уже не может прочитать; выполните `{command}` ещё раз.",
        "thanks_up": "Спасибо! Отмечено как полезное 👍",
        "thanks_down": "Спасибо! Отмечено как бесполезное 👎: это поможет улучшить поиск.",
        "vote_failed": "Извините, сейчас не удалось сохранить оценку. Попробуйте позже.",
        "degraded_expand": "вопрос не перефразирован (расширение запроса недоступно)",
        "degraded_embed": "только поиск по словам (семантический поиск недоступен)",
        "degraded_embed_mismatch": "только поиск по словам (семантический индекс не совпадает с моделью эмбеддингов)",
        "degraded_embed_fallback": "семантический поиск выполнен резервным провайдером",
        "degraded_rerank": "результаты не переранжированы (реранкер недоступен)",
        "degraded_rerank_fallback": "результаты переранжированы резервным провайдером",
        "degraded_other": "{stage} недоступен",
        # the hints of an answer with no hits (:func:`unheld_sentence`)
        "unheld": "Ни у одной заметки нет {what} «{value}» ({option})",
        "unheld_meant": "{line}: может быть, «{meant}»?",
        "unheld_none": "{line}: ни у одной заметки нет {what_plural}.",
        "unheld_held": "{line}; есть: {held}.",
        "what_tag": "тега",
        "what_type": "типа",
        "what_status": "статуса",
        "what_folder": "папки",
        "whats_tag": "тегов",
        "whats_type": "типов",
        "whats_status": "статусов",
        "whats_folder": "папок",
    },
}


def language_of(text: str) -> str:
    """The language an answer to ``text`` (a question, or a command's text) is said in: ``ru`` when the search reads
    the question as Russian (:func:`~kbsearch.lexical.query_language`), else ``en`` (English, or no letters)."""
    return "ru" if query_language(text) == "ru" else "en"


def told_language(text: str) -> str:
    """The language a usage answer or the help for ``text`` is said in: :func:`language_of`, or :data:`EVERY` when
    the text has no letter to judge by (English alone was said to a Russian speaker's `/kb 🙂`)."""
    return language_of(text) if any(ch.isalpha() for ch in text) else EVERY


def answer_block_id(language: str) -> str:
    """The block_id of an answer's actions in ``language``: ``kb_answer.ru``."""
    return f"{ANSWER_BLOCK}.{language}"


def block_language(block_id: str) -> str:
    """The language of the answer whose button was pressed, from its block's id (:func:`answer_block_id`);
    :data:`EVERY` when the block names none (an answer posted before it did) or another."""
    prefix, _, language = block_id.partition(".")
    return language if prefix == ANSWER_BLOCK and language in LANGUAGES else EVERY


def say(language: str, key: str, /, **fields: object) -> str:
    """kb-search's words for ``key`` in ``language`` (English when the language has none; every language, one line
    each, for :data:`EVERY`), ``fields`` filled in; ``command``, the slash command the words name, is ``/kb``
    unless given (the app's own: ``SLACK_COMMANDS``)."""
    if language == EVERY:
        return "\n".join(say(each, key, **fields) for each in LANGUAGES)
    words = _WORDS.get(language, _WORDS["en"])
    return (words.get(key) or _WORDS["en"][key]).format_map({"command": "/kb", **fields})


def help_text(language: str, command: str = "/kb") -> str:
    """The help in ``language``, naming ``command`` (the one the person typed: ``/wiki`` where the app is so named);
    for :data:`EVERY`, in each language."""
    if language == EVERY:
        return "\n\n".join(help_text(each, command) for each in LANGUAGES)
    return HELP.get(language, HELP["en"]).format(command=command)


def notes_found(language: str, n: int, query: str) -> str:
    """``{n} notes for “…”`` with the plural the language wants (Russian: 1 заметка, 2 заметки, 5 заметок)."""
    if language != "ru":
        return say(language, "notes_one" if n == 1 else "notes_many", n=n, query=query)
    form = (
        "notes_one"
        if n % 10 == 1 and n % 100 != 11
        else "notes_few"
        if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14
        else "notes_many"
    )
    return say(language, form, n=n, query=query)


def degraded(language: str, stages: list[str]) -> str:
    """The degraded stages of a search in words (an answer never shows raw scores)."""
    known = set(_WORDS["en"])
    return "; ".join(say(language, f"degraded_{s}") if f"degraded_{s}" in known else
                     say(language, "degraded_other", stage=s) for s in stages)  # fmt: skip


def unheld_sentence(language: str, filter_: Unheld, option: str) -> str:
    """A filter value no note holds, as one sentence of an answer with no hits (the same facts as
    :meth:`~kbsearch.browse.UnheldFilter.said`, in the answer's language)."""
    if language != "ru":
        return filter_.said(option, sentence=True)
    line = say(language, "unheld", what=say(language, f"what_{filter_.what}"), value=filter_.value, option=option)
    if filter_.meant:
        return say(language, "unheld_meant", line=line, meant=filter_.meant)
    if not filter_.held:
        return say(language, "unheld_none", line=line, what_plural=say(language, f"whats_{filter_.what}"))
    held = ", ".join(filter_.held[:10]) + (f" и ещё {len(filter_.held) - 10}" if len(filter_.held) > 10 else "")
    return say(language, "unheld_held", line=line, held=held)
