"""The hint each broken frontmatter gets, and what reading it costs (rev36b; committed in round 37 by tidy37: the
two scripts had stayed in ``/tmp``). ``CASES``: 50 frontmatters PyYAML refuses (one per scanner, parser and composer
error class and common slip: Russian values, CRLF, a BOM mid-value, NUL, control characters, tags, aliases and
anchors holding a secret-like name), each read by ``frontmatter._compose``; printed with the reason the note is
skipped for (``OK (no error)`` where YAML reads it). Read the lines for a hint that is wrong for its YAML or quotes
the note's text (a tag's or alias's name: ``AKIA``..., ``hunter2``..., the 300-character alias).

``--cost``: the median of 5 timings of 500 reads of 8 kinds, µs per broken frontmatter (rev36b's ``yamlcost``).

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/frontmatter_hints_check.py
    PYTHONPATH=layers/kbsearch:tools nice -n 5 .venv/bin/python eval/frontmatter_hints_check.py --cost
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import timeit

from kbsearch.frontmatter import FrontmatterError, _compose

CASES = {
    "colon in value": "title: Meeting: Q3 plan\n",
    "flow seq open": "tags: [hr, onboarding\ntitle: x\n",
    "flow map open": "meta: {a: 1\ntitle: x\n",
    "dq open": 'title: "abc\nowner: x\n',
    "sq open": "title: 'abc\nowner: x\n",
    "tab": "title: x\n\tbad: y\n",
    "apostrophe": "title: 'it's mine'\n",
    "at": "owner: @maria\n",
    "backtick": "owner: `maria`\n",
    "percent": "rate: %20\n",
    "list after scalar": "tags: hr\n- onboarding\n",
    "undefined alias": "password: *hunter2SecretValue\n",
    "dup anchor": "a: &k1 x\nb: &k1 y\n",
    "tag handle": "key: !AKIAIOSFODNN7EXAMPLE!x value\n",
    "tag verbatim": "key: !<tag:AKIAsecret> value\n",
    "unknown escape": 'path: "C:\\dir\\sub"\n',
    "bad unicode escape": 'x: "\\uZZZZ"\n',
    "anchor bad char": "a: &? x\n",
    "directive": "%YAML 1.1\n%YAML 1.1\n---\na: 1\n",
    "doc sep": "a: 1\n---\nb: 2\n",
    "bad indent": "a:\n  b: 1\n c: 2\n",
    "mapping in seq": "tags:\n- a\nb\n",
    "no colon": "title\nowner: x\n",
    "key no colon multiline": "title: x\nowner\n",
    "russian colon": "заголовок: Встреча: план Q3\n",
    "russian unclosed": "теги: [кадры, онбординг\n",
    "russian sq": "заголовок: 'Маша's note'\n",
    "question": "? a\n? b\n: c\n: d\n",
    "block scalar bad": "a: |x\n  text\n",
    "dq text after": 'title: "a" b\n',
    "flow after": "tags: [a] b\n",
    "pipe indent": "a: |\n text\n  more\nb: - x\n",
    "comma key": "a: b, c: d\n",
    "nul": "a: b\x00\n",
    "bom mid": "a: \ufeffb\n",
    "control": "a: b\x07\n",
    "dash value": "a: - b\n",
    "secret in dq": 'token: "sk-live-abcdef\n',
    "long alias": "a: *" + "s" * 300 + "\n",
    "tag python": "a: !!python/object:os.system x\n",
    "star": "a: **bold** text\n",
    "wiki link": "related: [[Other note]]\n",
    "wiki link2": "related: [[Other note]], [[B]]\n",
    "crlf colon": "title: Meeting: Q3\r\nowner: x\r\n",
    "exclaim": "title: !important note\n",
    "brace in value": "title: {draft} plan\n",
    "amp": "title: & co\n",
    "pipe": "title: | x\n",
    "gt": "title: > x\n",
    "hash": "title: a #b: c\n",
}
#: ``--cost``'s 8 kinds: a list then text, Obsidian's links, a tag, a colon, an open list, a quote, ``@``, ``**``.
COST = ["title: [Draft] Q3 plan\n", "related: [[A]], [[B]]\n", "token: !sek!x r\n", "title: Meeting: Q3 plan\n",
        "tags: [hr, onb\nstatus: d\n", "title: 'it's mine'\n", "owner: @maria\n", "a: **b** c\n"]  # fmt: skip


def hints() -> None:
    for name, text in CASES.items():
        try:
            _compose(text)
            print(f"{name:24} OK (no error)")
        except FrontmatterError as exc:
            print(f"{name:24} {exc}")
        except Exception as exc:  # a refusal that is no FrontmatterError is a finding: say it, go on
            print(f"{name:24} RAISED {type(exc).__name__}: {exc}"[:300])


def cost() -> None:
    def read_all() -> None:
        for text in COST:
            with contextlib.suppress(FrontmatterError):
                _compose(text)

    runs = [timeit.timeit(read_all, number=500) / (500 * len(COST)) * 1e6 for _ in range(5)]
    print(f"median {statistics.median(runs):.1f} us per broken frontmatter")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cost", action="store_true", help="time the reads instead of printing the hints")
    cost() if parser.parse_args().cost else hints()
