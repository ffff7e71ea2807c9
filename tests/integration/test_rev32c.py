"""Round 32's cold review (rev32c, RELIABILITY "Round 32 review: a cold review of rel32, adv32 and walk32"), through
the real interfaces (the indexer handler on moto's S3 events, the search handler on API Gateway events against a
loopback Qdrant Cloud: test_rel32's `deployed`). Each test fails on main's code (`PYTHONPATH=/work/main/...`)
unless said otherwise."""

from __future__ import annotations

from typing import Any

import pytest

import kbsearch.indexer
from tests.integration.test_events import PREFIX
from tests.integration.test_rel31 import _as, aws, cloud_env  # noqa: F401 (fixtures)
from tests.integration.test_rel32 import SECRET, Deployed, deployed  # noqa: F401 (fixture)


class Killed(BaseException):
    """The Lambda's end between two store calls (a timeout, the sandbox frozen for good): no handler catches it."""


def test_an_event_batch_after_a_sync_stopped_between_its_stamps_and_its_record_does_not_show_the_stale_record(
    deployed: Deployed,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rel32's `access_links_pending` says a sync stopped between its stamps and its record, and has the next writer
    record a generation at least as high. A full sync derives the whole record from the index, so it is right then;
    an event batch derived only its own notes' keys. Here `Plan.md` becomes hr's: its event batch gives the notes
    linking `[[Plan]]` a new generation, then stops before it records Plan as restricted (the links are hidden, as
    the record may be stale for them). A later batch for an unrelated note recorded a generation above the stamps
    (the time in ms; on 3003107 too, before the pending key) over the record that still said Plan is public: warm
    and new search containers trusted it and showed the public caller Welcome's link to a note it may not read,
    until the next full sync. Now a writer that finds a pending generation derives the whole record."""
    app = deployed.holding({"pub/Welcome.md": b"# Welcome\n\nwelcome zebra: read [[Plan]].\n",
                            "Plan.md": b"# Plan\n\nthe plan\n", "Secret.md": SECRET})  # fmt: skip
    assert _as(app, "id-pub")[0] == ["Plan"]
    real = kbsearch.indexer.stamp_links

    def stamped_then_killed(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(kbsearch.indexer, "stamp_links", stamped_then_killed)
    deployed.aws.put(f"{PREFIX}Plan.md", b"---\naccess: [hr]\n---\n# Plan\n\nthe plan\n")
    with pytest.raises(Killed):
        deployed.synced("event")
    monkeypatch.setattr(kbsearch.indexer, "stamp_links", real)
    assert _as(app, "id-pub")[0] == []
    deployed.aws.put(f"{PREFIX}pub/Other.md", b"# Other\n\nan unrelated note\n")
    deployed.synced("event")
    assert _as(app, "id-pub")[0] == []
    assert _as(deployed.search_app(), "id-pub")[0] == []
    deployed.synced("full sync")  # the whole record derived from the index: the links trusted again
    assert _as(deployed.search_app(), "id-pub")[0] == []
    assert _as(deployed.search_app(), "id-hr")[0] == ["Plan"]


def test_an_mcp_stdio_answer_is_one_line_to_a_reader_splitting_as_python_does() -> None:
    """walk32 made `kbsearch mcp`'s answers UTF-8 JSON, writing U+2028/U+2029 as escapes because Python's
    `str.splitlines` breaks lines there (the module's own reason); it breaks at U+0085 (NEL) too, which JSON leaves
    as it is and a note's text can hold (Windows-1252 text read as Latin-1): such an answer read as two lines by
    that reader. Now U+0085 is an escape as well (the same string to a JSON reader). Every character that
    `splitlines` breaks at, NUL and a lone surrogate are checked."""
    import io
    import json

    from kbsearch.mcp.stdio import write_message

    odd = "a\x00b\x0bc\x0cd\x1ce\x1df\x1eg\x85h\u2028i\u2029j\ud800k\r\nl"
    out = io.BytesIO()
    write_message(out, {"jsonrpc": "2.0", "id": 1, "result": {"text": odd}})
    line = out.getvalue()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    text = line.decode("utf-8")  # UTF-8 throughout
    assert len(text.splitlines()) == 1, text
    assert line[:-1].decode("ascii", errors="replace").count("\n") == 0  # a client reading it as ASCII: one line too
    assert json.loads(text)["result"]["text"] == odd
