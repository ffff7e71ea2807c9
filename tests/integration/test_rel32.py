"""Round 32: reliability debts left by round 31 (RELIABILITY "Round 32: debts (rel32)"), through the real interfaces:
the indexer handler on moto's S3 (its events and full syncs), the search handler on API Gateway events against a
loopback Qdrant Cloud serving the store the indexer writes (test_rel31's `cloud_env`), MCP over its transports,
`kbsearch` spawned. Each test fails on main's code (`PYTHONPATH=/work/main/layers/kbsearch:/work/main/tools`) unless
said otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath
from tests.integration import test_events
from tests.integration.test_events import BUCKET, PREFIX
from tests.integration.test_rel31 import _as, aws, cloud_env  # noqa: F401 (fixtures)

SECRET = b"---\naccess: [hr]\n---\n# Secret\n\nhidden\n"


def _synced(aws: EventPath, indexer: test_events.Indexer, by: str) -> None:  # noqa: F811
    """What the bucket's last changes are indexed by: their S3 events (no batch item failed), or the scheduled
    full sync after the events were lost."""
    if by == "event":
        assert indexer(aws.receive()) == []
        return
    aws.receive()  # the events lost
    report = indexer.app.lambda_handler({"full": True}, LambdaContext("kb-search-test-indexer", 2048, 900))
    assert not report.get("error"), report


def _bucket(aws: EventPath, indexer: test_events.Indexer, notes: dict[str, bytes]) -> None:  # noqa: F811
    """The bucket holds these notes, indexed by a full sync (which records the link targets)."""
    aws.receive()
    for name, body in notes.items():
        aws.put(f"{PREFIX}{name}", body)
    _synced(aws, indexer, "full sync")


def _search_app(load_search_app: Any, endpoint: FakeEndpoint) -> Any:
    return load_search_app(KB_SOURCE=f"s3://{BUCKET}/{PREFIX}", QDRANT_URL=endpoint.url, QDRANT_API_KEY="qk",
                           ACCESS_GROUPS=json.dumps({"api_keys": {"id-pub": ["public"], "id-hr": ["hr"]}}))  # fmt: skip


# -- 1: links to no note, and links by a title, follow a change at a warm search Lambda's next request -------------


@pytest.mark.parametrize("by", ["event", "full sync"])
def test_a_first_restricted_note_hides_links_to_no_note_at_a_warm_search_lambdas_next_request(
    by: str,
    aws: EventPath,  # noqa: F811
    cloud_env: tuple[test_events.Indexer, FakeEndpoint],  # noqa: F811
    load_search_app: Any,
) -> None:
    """rel31's "Left": whether a link naming no note is shown depends on whether the caller is hidden a note at all
    (else a hidden link would tell a restricted note from a missing one). With no restricted note, the public caller
    sees Welcome's `[[Nowhere]]`; once `Secret.md` (hr) is indexed, a warm search container kept showing it for its
    cached minute (Welcome names no changed key, so it got no new generation), while the links to Secret itself were
    hidden: a link hidden beside one shown told that it names a restricted note. Now a change of the restricted
    notes' group sets gives the notes holding a link to no note the new generation too."""
    indexer, endpoint = cloud_env
    _bucket(aws, indexer, {"pub/Welcome.md": b"# Welcome\n\nwelcome zebra: read [[Nowhere]].\n"})
    app = _search_app(load_search_app, endpoint)
    assert _as(app, "id-pub") == (["Nowhere"], ["Nowhere"])
    aws.put(f"{PREFIX}Secret.md", SECRET)
    _synced(aws, indexer, by)
    assert _as(app, "id-pub") == ([], [])
    assert _as(app, "id-hr") == (["Nowhere"], ["Nowhere"])  # hr is hidden no note: links to no note are shown


@pytest.mark.parametrize("by", ["event", "full sync"])
def test_a_created_public_note_shows_the_links_to_it_at_a_warm_search_lambdas_next_request(
    by: str,
    aws: EventPath,  # noqa: F811
    cloud_env: tuple[test_events.Indexer, FakeEndpoint],  # noqa: F811
    load_search_app: Any,
) -> None:
    """rel31's "Left": a link to a note not written yet is hidden from a caller hidden a note (as any link to no
    note); once the note is created public it names a note the caller reads. Synced by its S3 event, the notes
    linking it got the new generation already (passes on main); synced by a full sync (the event lost), they did
    not, and a warm search container kept hiding the link for its cached minute (fails on main). Now a full sync
    counts a public note new to the recorded filter as a changed key, as an event batch did."""
    indexer, endpoint = cloud_env
    _bucket(aws, indexer, {"pub/Welcome.md": b"# Welcome\n\nwelcome zebra: read [[Later]].\n", "Secret.md": SECRET})
    app = _search_app(load_search_app, endpoint)
    assert _as(app, "id-pub") == ([], [])
    aws.put(f"{PREFIX}Later.md", b"# Later\n\nwritten later\n")
    _synced(aws, indexer, by)
    assert _as(app, "id-pub") == (["Later"], [])  # resolved in the graph: a note the caller reads


@pytest.mark.parametrize("link", ["The Blueprint", "Draft Plan"], ids=["title", "alias"])
def test_a_link_by_title_or_alias_to_a_public_note_a_full_sync_finds_deleted_is_hidden_at_once(
    link: str,
    aws: EventPath,  # noqa: F811
    cloud_env: tuple[test_events.Indexer, FakeEndpoint],  # noqa: F811
    load_search_app: Any,
) -> None:
    """rel31's "Left": a public note a full sync finds deleted (its event lost) was known by its path keys only, so a
    note linking it by its title or an alias got no new generation, and a warm search container showed that link
    (to no note now) for its cached minute to a caller hidden a note. Now the full sync reads the title and alias
    keys of the notes it deletes before it deletes them."""
    indexer, endpoint = cloud_env
    plan = b"---\ntitle: The Blueprint\naliases: [Draft Plan]\n---\n# Plan body\n\nthe plan\n"
    welcome = f"# Welcome\n\nwelcome zebra: read [[{link}]].\n".encode()
    _bucket(aws, indexer, {"pub/Welcome.md": welcome, "ops/plan.md": plan, "Secret.md": SECRET})
    app = _search_app(load_search_app, endpoint)
    assert _as(app, "id-pub") == ([link], [])
    aws.delete(f"{PREFIX}ops/plan.md")
    _synced(aws, indexer, "full sync")
    assert _as(app, "id-pub") == ([], [])
    assert _as(_search_app(load_search_app, endpoint), "id-pub") == ([], [])  # a new container alike
