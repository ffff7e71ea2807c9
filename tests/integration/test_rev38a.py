"""Round 38's cold review of adv38 and perf38 (rev38a): through the real interfaces (RELIABILITY.md, "Round 38
review: a cold review of adv38 and perf38 (rev38a)")."""

from __future__ import annotations

from typing import Any

from kbsearch_tools.fakes import FakeEndpoint
from kbsearch_tools.local.runtime import LambdaContext
from kbsearch_tools.s3events import EventPath
from tests.integration import test_events
from tests.integration.test_events import PREFIX
from tests.integration.test_rel31 import aws as aws  # noqa: PLC0414 (the fixture, shared)
from tests.integration.test_rel31 import cloud_env as cloud_env  # noqa: PLC0414 (the fixture, shared)
from tests.integration.test_rel31 import hidden_once_restricted


def test_a_relative_link_to_a_note_turned_restricted_is_hidden_at_a_warm_search_lambdas_next_request(
    aws: EventPath, cloud_env: tuple[test_events.Indexer, FakeEndpoint], load_search_app: Any
) -> None:
    """rel31's guarantee for a link from the root (adv38: `[[../Plan]]` is stored as the key `/plan`): when an S3
    event turns `Plan.md` `access: [hr]`, the sync gives the notes whose links name its keys a new generation
    (`indexer.stamp_links`) before it records the link targets, so a warm search container reads the record again.
    It asked the index for the notes linking the bare keys (`l:plan`), never the anchored `l:/plan`: Welcome's
    links kept the old generation, and a warm container kept showing the public caller the link to the note now
    hidden from it (in a hit and in the note graph) for up to the metadata's cached minute. Now the anchored keys
    are stamped too: hidden at the next request, still shown to hr."""
    indexer, endpoint = cloud_env
    aws.receive()
    aws.put(f"{PREFIX}pub/Welcome.md", b"# Welcome\n\nwelcome zebra: read [[../Plan]].\n")
    aws.put(f"{PREFIX}Plan.md", b"---\naccess: [public]\n---\n# Plan\n\nthe plan\n")
    aws.put(f"{PREFIX}Secret.md", b"---\naccess: [hr]\n---\n# Secret\n\nhidden\n")
    aws.receive()
    indexer.app.lambda_handler({"full": True}, LambdaContext("kb-search-test-indexer", 2048, 900))
    hidden_once_restricted(aws, indexer, endpoint, load_search_app, "/Plan")
