"""Round 35's adversarial pass (adv35): the note graph at the sizes a real vault reaches (a hub every note links back
to, a map of content linking hundreds of notes), read through the search handler given API Gateway events
(``GET /notes/{path}``) over Qdrant Edge."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kbsearch.config import Settings
from tests.integration.test_notes_graph import get, sync, write_kb

#: More notes than one graph query returned (``browse.GRAPH_LIMIT``, 500).
LINKERS = 1_200
#: A map of content linking more existing notes than one graph query returned.
MAPPED = 700


def graph_kb(root: Path) -> Path:
    notes = {
        "Hub.md": "# Hub\n\nStart at [[Target]], then [[ops/Second|the second note]]; [[Missing]] is not written yet.\n",
        "Target.md": "# Target\n\nWhere the hub points.\n",
        "ops/Second.md": "# Second\n\nAnother note the hub points at.\n",
        "Map.md": "# Map\n\n" + "\n".join(f"- [[n{i:05}]]" for i in range(MAPPED)) + "\n",
    }
    for i in range(LINKERS):
        notes[f"daily/n{i:05}.md"] = f"# Day {i}\n\nBack to [[Hub]].\n"
    return write_kb(root, notes)


def test_a_hub_and_a_map_of_content_resolve_every_outgoing_link_to_its_note(
    load_search_app: Any, tmp_path: Path
) -> None:
    """The note graph was one query of at most 500 first chunks for both directions: the notes linking here and
    the notes this one's links could mean. A hub linked from 1,200 daily notes had its own links (`[[Target]]`,
    an existing note) answered `path: null`, as links to no note, whenever the backlinks filled the 500 first;
    a map of content linking 700 existing notes had 200 of them answered so. Now the two directions are two
    searches of one batch, each with its own limit: outgoing links resolve whatever the backlinks, and
    `backlinks_truncated` says what it always meant."""
    folder = graph_kb(tmp_path / "kb")
    store = tmp_path / "q"
    settings = Settings(qdrant_path=str(store), qdrant_url="", embedding_api_key=None, embedding_api_key_param="")
    sync(settings, folder)
    api = load_search_app(QDRANT_PATH=str(store), KB_SOURCE=str(folder))

    status, body = get(api, "/notes/Hub.md")
    assert status == 200
    assert [(r["target"], r["path"]) for r in body["links"]["outgoing"]] == [
        ("Target", "Target.md"), ("ops/Second", "ops/Second.md"), ("Missing", None)
    ]  # fmt: skip
    backlinks = [r["path"] for r in body["links"]["backlinks"]]
    assert body["links"]["backlinks_truncated"] is True and len(backlinks) == 500
    assert set(backlinks) <= {f"daily/n{i:05}.md" for i in range(LINKERS)} and backlinks == sorted(backlinks)

    status, body = get(api, "/notes/Map.md")
    assert status == 200 and len(body["links"]["outgoing"]) == MAPPED
    unresolved = [r["target"] for r in body["links"]["outgoing"] if r["path"] != f"daily/{r['target']}.md"]
    assert unresolved == [], f"{len(unresolved)} of {MAPPED} links to existing notes answered as links to no note"
    assert body["links"]["backlinks"] == [] and body["links"]["backlinks_truncated"] is False

    status, body = get(api, "/notes/daily/n00042.md")  # a note of the crowd: its one link and its one backlink
    assert status == 200 and [(r["target"], r["path"]) for r in body["links"]["outgoing"]] == [("Hub", "Hub.md")]
    assert [r["path"] for r in body["links"]["backlinks"]] == ["Map.md"]


SIGNING_PARAM = "/kb-search/test/slack-signing-secret"


def test_a_slack_signing_secret_rotated_in_ssm_is_read_again_at_the_first_command_it_signs(
    load_search_app: Any, bm25_index: Path, tmp_path: Path
) -> None:
    """README's rotation: regenerate the signing secret in Slack, store it with `put-parameter --overwrite`. A warm
    search container kept the old one for SECRETS_TTL_S (5 min): every slash command and button press signed with
    the new one was a 401 `signature mismatch` meanwhile (a provider's or Qdrant's key is read again at its first
    401; this secret was not). Now a signature that does not verify has SSM read again, at most every 15 s
    (anyone can send one), and is checked once more with the new value; a forged one stays a 401."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    from kbsearch_tools.fakes import FakeEndpoint
    from tests.conftest import copy_store
    from tests.integration.test_slack import form, slack_event

    store = tmp_path / "q"
    copy_store(bm25_index, store)
    response_url = FakeEndpoint().start()
    try:
        with mock_aws():
            parameters.clear_caches()
            ssm = boto3.client("ssm", region_name="us-east-1")
            ssm.put_parameter(Name=SIGNING_PARAM, Type="SecureString", Value="old-signing-secret")
            app = load_search_app(QDRANT_PATH=str(store), SLACK_SIGNING_SECRET_PARAM=SIGNING_PARAM,
                                  SLACK_RESPONSE_HOSTS="127.0.0.1")  # fmt: skip

            def body(n: int) -> str:  # a command of its own (the worker answers each trigger once)
                return form("qdrant snapshot", f"{response_url.url}/commands/{n}", trigger=f"1334522460{n}.7.80")

            first = app(slack_event(body(1), secret="old-signing-secret"))
            ssm.put_parameter(Name=SIGNING_PARAM, Type="SecureString", Value="new-signing-secret", Overwrite=True)
            rotated = app(slack_event(body(2), secret="new-signing-secret"))
            forged = app(slack_event(body(3), secret="a-forgers-guess"))
            again = app(slack_event(body(4), secret="new-signing-secret"))
            parameters.clear_caches()
            for _ in range(300):  # the three commands taken are answered at their response_url (the local worker)
                if len(response_url.requests) >= 3:
                    break
                time.sleep(0.1)
    finally:
        response_url.stop()
    assert first["statusCode"] == 200, first
    assert rotated["statusCode"] == 200, rotated["body"]
    assert forged["statusCode"] == 401 and "signature mismatch" in forged["body"], forged
    assert again["statusCode"] == 200, again["body"]
    for answer in (first, rotated, forged, again):
        assert "signing-secret" not in answer["body"]
    assert sorted(r.path for r in response_url.requests) == ["/commands/1", "/commands/2", "/commands/4"]
