"""kbsearch.access: who may read a note (declarations, folder rules, default) and who is asking (scopes)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kbsearch.access import (
    PUBLIC,
    AccessDeclarationError,
    AccessFileError,
    CallerMap,
    CallerMapError,
    FolderRules,
    LinkTargets,
    Scope,
    declared_access,
    note_access,
    restricted_links,
    visible_links,
)
from kbsearch.links import KeyFilter, link_key
from kbsearch.notes import parse_note


def declared(front: str) -> list[str] | None:
    note = parse_note("a/b.md", f"---\n{front}\n---\n# B\ntext\n".encode())
    return declared_access(note.metadata, note.warnings)


@pytest.mark.parametrize(
    ("front", "groups"),
    [
        ("access: [hr]", ["hr"]),
        ("access: [HR, Security, hr]", ["hr", "security"]),
        ("access: hr", ["hr"]),
        ("access:\n  - oncall\n  - security", ["oncall", "security"]),
        ("Access: [public]", ["public"]),
        # as written, as Obsidian shows them (YAML 1.1 types them: false, true, 3, 511, a date, 1.1)
        ("access: [no, on, 3, 0777, 2024-02-30, 1.10]", ["0777", "1.10", "2024-02-30", "3", "no", "on"]),
        ("access: 3", ["3"]),
        ('access: "no"', ["no"]),
        ("title: x", None),
        ("", None),
    ],
)
def test_declarations_that_are_understood(front: str, groups: list[str] | None) -> None:
    assert declared(front) == groups


@pytest.mark.parametrize(
    "front",
    [
        "access: []",  # lists nobody: not silently public
        "access:",  # the key with no value
        "access: no",  # a bare yes/no switch: everyone or nobody is not known
        "access: TRUE",
        "access: ~",
        "access: [.inf]",
        "access: {hr: true}",
        "access: [[hr]]",
        "access: [hr, null]",
        "access: ['h r']",
        "access: ['../hr']",
        "access: ['']",
        "access: [" + ", ".join(f"g{i}" for i in range(40)) + "]",  # too many
        "access: [" + "a" * 65 + "]",  # too long a name
        "access: !!binary '***'",  # YAML parses it, Python cannot build it: the field is dropped with a warning
        "access: 2024-01-01 10:00:00",  # was indexed under 2024-01-01t10:00:00, a group nobody wrote
        "access: [hr]\nACCESS: [security]",  # two spellings
        # the key with spaces or a look-alike letter, its value dropped: it was read as no declaration (public)
        '"access ": no',
        "access\u00a0: off",  # a no-break space pasted before the colon (YAML's plain key keeps it)
        '" Access": true',
        '"access ": !weird x',
        "\u0430ccess: !weird x",  # a Cyrillic а
        '"access ": {hr: 1, hr: 2}',
        # the entry holding `access` dropped whole: it was read as no declaration (public)
        "!weird access: [hr]",  # a key of a tag kb-search cannot build
        "? [access]\n: [hr]",  # a complex key
        "<<: {access: [hr], x: !weird y}",  # a merge with a sibling it cannot build
        "<<: [{access: [hr]}, 3]",  # a merge list holding a non-mapping
    ],
)
def test_malformed_declarations_are_errors_never_public(front: str) -> None:
    with pytest.raises(AccessDeclarationError):
        declared(front)


RULES = FolderRules.parse(b"hr/: [hr]\nsecurity/incidents/: [security, oncall]\nsecurity/: security\n")


@pytest.mark.parametrize(
    ("path", "groups", "source"),
    [
        ("hr/pay.md", ["hr"], "folder:hr"),
        ("HR/pay.md", ["hr"], "folder:hr"),  # case-insensitive: one file on a case-insensitive disk
        ("hr/deep/er/pay.md", ["hr"], "folder:hr"),
        ("security/incidents/2026.md", ["oncall", "security"], "folder:security/incidents"),
        ("security/policy.md", ["security"], "folder:security"),
        ("hrx/pay.md", [PUBLIC], "default"),  # a prefix of a name is not the folder
        ("pay.md", [PUBLIC], "default"),
    ],
)
def test_longest_folder_rule_wins(path: str, groups: list[str], source: str) -> None:
    assert note_access(path, None, RULES) == (groups, source)


def test_nfc_forms_of_a_rule_match() -> None:
    decomposed = "кадры/и\u0306.md"  # й as и + combining breve
    rules = FolderRules.parse("кадры/: [hr]\n".encode())
    assert note_access(decomposed, None, rules)[0] == ["hr"]
    assert note_access("КАДРЫ/x.md", None, rules)[0] == ["hr"]


def test_declaration_beats_rules_and_default_deny() -> None:
    assert note_access("hr/pay.md", ["public"], RULES) == (["public"], "frontmatter")
    assert note_access("misc/x.md", None, RULES, default="deny") == ([], "default")
    assert note_access("x.md", None, FolderRules.parse(b"/: [staff]\n")) == (["staff"], "folder:/")


@pytest.mark.parametrize(
    "raw",
    [
        b"hr/: []\n",
        b"hr/: off\n",  # a switch, not a group list
        b"hr/: [.nan]\n",
        b"hr/: {a: b}\n",
        b"- hr\n",  # not a mapping
        b"hr/: [hr]\nhr: [x]\n",  # the same folder twice
        b"../hr/: [hr]\n",
        b"hr/: &a [hr]\nx/: *a\n",  # aliases refused
        b"hr/: [hr\n",  # YAML syntax
        b"\xff\xfe",
        b"hr/: !!binary '***'\n",
        b"x" * (300 * 1024),
    ],
)
def test_malformed_access_files_are_errors(raw: bytes) -> None:
    with pytest.raises(AccessFileError):
        FolderRules.parse(raw)


def test_access_file_groups_are_read_as_written() -> None:
    """`hr/: [no, 0777]` names the groups `no` and `0777` (YAML 1.1: false and 511, which stopped the sync)."""
    assert FolderRules.parse(b"hr/: [no, 0777]\n01: 3\n").rules == (("hr", ("0777", "no")), ("01", ("3",)))


def test_empty_access_file_has_no_rules() -> None:
    assert FolderRules.parse(b"") == FolderRules()
    assert FolderRules.parse(b"# nothing yet\n") == FolderRules()


def test_scope_semantics() -> None:
    anonymous = Scope.public()
    hr = Scope.of("k", ["hr"])
    assert anonymous.query_groups() == ["public"]
    assert hr.query_groups() == ["hr", "public"]
    assert Scope.unrestricted().query_groups() is None
    assert hr.can_read(["hr", "finance"]) and hr.can_read(["public"])
    assert not hr.can_read(["security"]) and not hr.can_read([]) and not hr.can_read(None)
    assert Scope.unrestricted().can_read([])
    assert Scope.parse("cli", "HR, security") == Scope.of("cli", ["hr", "security"])
    assert Scope.parse("cli", "hr+security").groups == frozenset({"hr", "security", "public"})
    assert Scope.parse("cli", "*").groups is None
    assert hr.key() == Scope.of("other caller", ["hr"]).key() != anonymous.key()
    with pytest.raises(ValueError):
        Scope.parse("cli", "h r/../x")


def test_caller_map() -> None:
    mapping = CallerMap.parse(
        '{"api_keys": {"k1": {"name": "portal", "groups": ["hr"]}, "k2": ["security", "oncall"]},'
        ' "slack": {"T1": ["staff"], "T1/C1": ["security"], "T1/C1/U1": ["security", "hr"]}}'
    )
    assert mapping.for_api_key("k1") == Scope.of("apikey:k1 (portal)", ["hr"])
    assert mapping.for_api_key("k2").groups == frozenset({"security", "oncall", "public"})
    assert mapping.for_api_key("unknown").groups == frozenset({"public"})
    assert mapping.for_api_key(None).groups == frozenset({"public"})
    assert mapping.for_slack("T1", "C1", "U1").groups == frozenset({"security", "hr", "public"})
    # an answer shared into the channel has the channel's scope, not the asker's
    assert mapping.for_slack("T1", "C1", "U1", share=True).groups == frozenset({"security", "public"})
    assert mapping.for_slack("T1", "C9", "U1").groups == frozenset({"staff", "public"})
    assert mapping.for_slack("T9", "C1").groups == frozenset({"public"})
    assert CallerMap.parse(None) == CallerMap.parse("  ") == CallerMap.empty()


@pytest.mark.parametrize(
    "text",
    ["{", "[]", '{"keys": {}}', '{"api_keys": []}', '{"api_keys": {"k": []}}', '{"api_keys": {"k": [1]}}',
     '{"slack": {"T/C/U/X": ["a"]}}', '{"slack": {"T//U": ["a"]}}', '{"slack": []}'],
)  # fmt: skip
def test_bad_caller_maps_are_errors(text: str) -> None:
    with pytest.raises(CallerMapError):
        CallerMap.parse(text)


def test_links_into_restricted_notes_are_hidden() -> None:
    restricted, public = restricted_links([("hr/Salary bands.md", ["hr"]), ("pub/Onboarding.md", ["public"])])
    assert restricted == {"salary bands": ["hr"], "hr/salary bands": ["hr"]}
    assert public == {"onboarding", "pub/onboarding"}
    links = ["Salary bands", "hr/salary BANDS.md", "Onboarding", "other/Salary bands", " HR / Salary bands ",
             "hr\\Salary bands", "./hr/Salary bands.md", "diagram.png", "#Heading"]  # fmt: skip
    targets = LinkTargets(restricted)  # recorded before the public notes' keys were: a link to no note is shown
    assert visible_links(links, targets, Scope.public()) == [
        "Onboarding", "other/Salary bands", "diagram.png", "#Heading"
    ]  # fmt: skip
    assert visible_links(links, targets, Scope.of("k", ["hr"])) == links
    assert visible_links(links, None, Scope.public()) == []  # not known: hidden rather than guessed
    assert visible_links(links, None, Scope.unrestricted()) == links
    assert link_key("Ünïcode/Note.MD") == link_key("U\u0308ni\u0308code/note")


def test_a_link_naming_no_note_is_hidden_like_one_naming_a_restricted_note() -> None:
    """With the public notes' keys recorded, a caller from whom a restricted note is hidden cannot tell its link
    from a link to no note: both are left out (the prose shows both names, so showing one would name the other
    a restricted note). A caller hidden nothing, and every caller of a KB with no restricted note, sees both."""
    notes = [("hr/Salary bands.md", ["hr"]), ("fin/Budget.md", ["finance"]), ("pub/Onboarding.md", ["public"])]
    restricted, public = restricted_links(notes)
    targets = LinkTargets(restricted, KeyFilter.of(public))
    links = ["Salary bands", "Never existed", "Onboarding", "pub/onboarding", "Budget", "diagram.png"]
    shown = ["Onboarding", "pub/onboarding", "diagram.png"]
    assert visible_links(links, targets, Scope.public()) == shown
    assert visible_links(links, targets, Scope.of("k", ["hr"])) == ["Salary bands", *shown]  # finance hidden
    assert visible_links(links, targets, Scope.of("k", ["finance"])) == ["Onboarding", "pub/onboarding", "Budget",
                                                                         "diagram.png"]  # fmt: skip
    assert visible_links(links, targets, Scope.of("k", ["hr", "finance"])) == links  # hidden nothing
    assert visible_links(links, targets, Scope.unrestricted()) == links
    open_kb = LinkTargets(*restricted_links([("pub/Onboarding.md", ["public"])])[:1])
    open_kb.names = KeyFilter.of(["onboarding", "pub/onboarding"])
    assert visible_links(links, open_kb, Scope.public()) == links  # no restricted note: nothing to tell
    damaged = LinkTargets({"budget": "finance"}, KeyFilter.of(public))  # not a list of names: hides a note
    assert visible_links(["Never existed", "Onboarding"], damaged, Scope.of("k", ["finance"])) == ["Onboarding"]


def test_the_recorded_link_targets_are_read_whole_or_as_before() -> None:
    """``LinkTargets.recorded``: the list and the filter from the collection's metadata; a filter never recorded
    reads as before it was (links to no note shown), one recorded damaged (any damage) as holding no name (links to
    no note hidden from a caller hidden a note: it fails closed), a list that is not one as unknown."""
    from kbsearch.qdrant.query import LINK_NAMES, RESTRICTED_LINKS

    names = KeyFilter.of(["onboarding"]).to_json()
    read = LinkTargets.recorded({RESTRICTED_LINKS: {"x": ["hr"]}, LINK_NAMES: names})
    assert read is not None and read.names is not None and "onboarding" in read.names
    assert LinkTargets.recorded({RESTRICTED_LINKS: ["x"], LINK_NAMES: names}) is None
    assert LinkTargets.recorded(None) is None
    for broken in (names | {"bits": str(names["bits"])[:-4]}, "x", [names], {"v": 2}):
        damaged = LinkTargets.recorded({RESTRICTED_LINKS: {"x": ["hr"]}, LINK_NAMES: broken})
        assert damaged is not None and damaged.names is not None and "onboarding" not in damaged.names
        assert visible_links(["Onboarding", "X"], damaged, Scope.public()) == []
    older = LinkTargets.recorded({RESTRICTED_LINKS: {"x": ["hr"]}})
    assert older is not None and older.names is None
    assert visible_links(["Onboarding", "X"], older, Scope.public()) == ["Onboarding"]


@pytest.mark.parametrize(
    "path",
    ["hr/Salary bands.md", "HR/Ünïcode Note.MD", "U\u0308ber/Note.md", "deep/a/b/c/Note.md", "x" * 600 + "/N.md"],
)
def test_restricted_link_keys_are_the_stored_path_keys(path: str) -> None:
    """The restricted-link list is keyed by exactly the path keys the indexer stores (``graph_keys``' ``p:``) and a
    link is matched by (``link_key``): one function, whatever the case, Unicode form or length of the path."""
    from kbsearch.links import path_keys

    restricted, public = restricted_links([(path, ["hr"])])
    assert set(restricted) == set(path_keys(path)) and not public and restricted
    name = path.rsplit("/", 1)[1].removesuffix(".md").removesuffix(".MD")
    tail = path.rsplit("/", 2)[-2] + "/" + name  # a tail too long for a key is no key (and names no note)
    for link in (name, name.upper(), *([tail] if len(tail) <= 512 else [])):
        assert link_key(link) in restricted
        assert visible_links([link], LinkTargets(restricted), Scope.public()) == []
    assert str(link_key(name)) not in restricted_links([(path, ["hr"]), ("other/" + name + ".md", ["public"])])[0]


def test_container_resolves_scopes_and_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from kbsearch.api.container import Container

    monkeypatch.setenv("ACCESS_GROUPS", '{"api_keys": {"k1": ["hr"]}, "slack": {"T1/C1": ["security"]}}')
    container = Container()
    event = {"requestContext": {"identity": {"apiKeyId": "k1", "apiKey": "the-key-value"}}}
    assert container.api_scope(event) == Scope.of("apikey:k1", ["hr"])
    assert container.api_scope({"requestContext": {"identity": {"apiKeyId": None}}}) == Scope.public()
    assert container.api_scope({}) == Scope.public()
    assert container.slack_scope("T1", "C1", "U1", share=True).groups == frozenset({"security", "public"})
    monkeypatch.setenv("ACCESS_GROUPS", '{"api_keys": {"k1": []}}')  # malformed: nobody gets more than public
    assert Container().api_scope(event) == Scope.public("apikey:k1")


def test_the_caller_mapping_is_read_from_ssm_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The template's way: ACCESS_GROUPS_PARAM names a SecureString; a change is seen without a redeploy (after
    ACCESS_GROUPS_TTL_S), a missing parameter means public only."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    from kbsearch.api.container import Container

    event = {"requestContext": {"identity": {"apiKeyId": "k1"}}}
    monkeypatch.setenv("ACCESS_GROUPS_PARAM", "/kb-search/test/access-groups")
    monkeypatch.setenv("ACCESS_GROUPS_TTL_S", "0")
    with mock_aws():
        parameters.clear_caches()
        ssm = boto3.client("ssm", region_name="us-east-1")
        container = Container()
        assert container.api_scope(event) == Scope.public("apikey:k1")  # not there yet: public only
        ssm.put_parameter(Name="/kb-search/test/access-groups", Type="SecureString",
                          Value='{"api_keys": {"k1": ["hr"]}}')  # fmt: skip
        container.secrets.refresh()  # a missing parameter's warning is cached like a value; the TTL is 0
        assert container.api_scope(event) == Scope.of("apikey:k1", ["hr"])
        ssm.put_parameter(Name="/kb-search/test/access-groups", Type="SecureString", Overwrite=True,
                          Value='{"api_keys": {"k1": ["hr", "finance"]}}')  # fmt: skip
        parameters.clear_caches()
        assert container.api_scope(event).groups == frozenset({"hr", "finance", "public"})


MAPPING_PARAM, KEY_PARAM = "/kb-search/test/access-groups", "/kb-search/test/deepinfra-api-key"
HR_EVENT = {"requestContext": {"identity": {"apiKeyId": "k1"}}}


@contextlib.contextmanager
def _mapping_and_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    """moto's SSM holding the caller mapping (k1 → hr) and a provider key (di-key-1), read by a container whose
    mapping lives ACCESS_GROUPS_TTL_S = 1 s: (the SSM client, the container)."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    from kbsearch.api.container import Container

    monkeypatch.setenv("ACCESS_GROUPS_PARAM", MAPPING_PARAM)
    monkeypatch.setenv("EMBEDDING_API_KEY_PARAM", KEY_PARAM)
    monkeypatch.setenv("ACCESS_GROUPS_TTL_S", "1")
    with mock_aws():
        parameters.clear_caches()
        ssm = boto3.client("ssm", region_name="us-east-1")
        ssm.put_parameter(Name=MAPPING_PARAM, Type="SecureString", Value='{"api_keys": {"k1": ["hr"]}}')
        ssm.put_parameter(Name=KEY_PARAM, Type="SecureString", Value="di-key-1")
        container = Container()
        yield ssm, container


def test_the_caller_mapping_has_its_own_short_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """ACCESS_GROUPS_TTL_S, not SECRETS_TTL_S: within it a changed mapping is not read (the old groups apply),
    after it the new ones do, while a provider key read in the same batch keeps its own, longer TTL."""
    import time

    with _mapping_and_key(monkeypatch) as (ssm, container):
        assert container.api_scope(HR_EVENT).groups == frozenset({"hr", "public"})
        assert container.secrets.get("EMBEDDING_API_KEY") == "di-key-1"
        ssm.put_parameter(Name=MAPPING_PARAM, Type="SecureString", Overwrite=True,
                          Value='{"api_keys": {"k1": ["finance"]}}')  # fmt: skip
        ssm.put_parameter(Name=KEY_PARAM, Type="SecureString", Overwrite=True, Value="di-key-2")
        assert container.api_scope(HR_EVENT).groups == frozenset({"hr", "public"})  # within the TTL: cached
        time.sleep(1.2)
        assert container.api_scope(HR_EVENT).groups == frozenset({"finance", "public"})  # after it: the new one
        assert container.secrets.get("EMBEDDING_API_KEY") == "di-key-1"  # SECRETS_TTL_S (300 s) still holds
        ssm.delete_parameter(Name=MAPPING_PARAM)  # the mapping removed: public only once the TTL has passed
        time.sleep(1.2)
        assert container.api_scope(HR_EVENT) == Scope.public("apikey:k1")


def test_reading_the_caller_mapping_does_not_extend_the_provider_keys_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh of the short-lived mapping re-reads only the mapping (the key comes from Powertools' cache): the
    key is still read again SECRETS_TTL_S after it was last read, however often the mapping was refreshed since."""
    import time

    monkeypatch.setenv("SECRETS_TTL_S", "6")
    with _mapping_and_key(monkeypatch) as (ssm, container):
        assert container.secrets.get("EMBEDDING_API_KEY") == "di-key-1"
        started = time.monotonic()
        ssm.put_parameter(Name=KEY_PARAM, Type="SecureString", Overwrite=True, Value="di-key-2")
        time.sleep(1.2)
        assert container.api_scope(HR_EVENT).groups == frozenset({"hr", "public"})  # the mapping refreshed
        assert (
            container.secrets.get("EMBEDDING_API_KEY") == "di-key-1"
        )  # the key within its 6 s (a 5x margin over the 1.2 s slept)
        time.sleep(max(0.0, 6.3 - (time.monotonic() - started)))
        assert container.secrets.get("EMBEDDING_API_KEY") == "di-key-2"  # 6 s after its read, not after the mapping's


SSM_FAILURES = {  # how a GetParameters can fail: (status, body); status 0 drops the connection
    "internal-error": (500, b'{"__type": "InternalServerError", "message": "down"}'),
    "throttled": (400, b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'),
    "denied": (400, b'{"__type": "AccessDeniedException", "message": "no kms:Decrypt"}'),
    "connection-drop": (0, b""),
}


@pytest.mark.parametrize("failure", list(SSM_FAILURES))
def test_a_failed_refresh_of_the_caller_mapping_widens_nothing(monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    """SSM (a loopback endpoint speaking its JSON protocol) answers, then fails: within ACCESS_GROUPS_TTL_S the
    mapping read before serves; past it every caller holds ``public`` only (a grant revoked meanwhile must not
    live on in a stale copy), while the provider keys keep serving their cached values until their own TTL."""
    import time

    from kbsearch.api.container import Container
    from kbsearch_tools.fakes import FakeEndpoint

    values = {MAPPING_PARAM: '{"api_keys": {"k1": ["hr"]}}', KEY_PARAM: "di-key-1"}
    up = {"ssm": True}

    def ssm_api(method: str, path: str) -> tuple[int, bytes, str]:
        if not up["ssm"]:
            return *SSM_FAILURES[failure], "application/x-amz-json-1.1"
        names = endpoint.requests[-1].body["Names"]  # this request's (recorded before it is answered)
        found = [{"Name": n, "Type": "SecureString", "Value": values[n], "Version": 1, "DataType": "text",
                  "ARN": f"arn:aws:ssm:us-east-1:123456789012:parameter{n}"} for n in names if n in values]  # fmt: skip
        body = {"Parameters": found, "InvalidParameters": [n for n in names if n not in values]}
        return 200, json.dumps(body).encode(), "application/x-amz-json-1.1"

    endpoint = FakeEndpoint().start()
    endpoint.responder = ssm_api
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", endpoint.url)
        monkeypatch.setenv("ACCESS_GROUPS_PARAM", MAPPING_PARAM)
        monkeypatch.setenv("EMBEDDING_API_KEY_PARAM", KEY_PARAM)
        monkeypatch.setenv("ACCESS_GROUPS_TTL_S", "1")
        container = Container()
        assert container.api_scope(HR_EVENT).groups == frozenset({"hr", "public"})
        assert container.secrets.get("EMBEDDING_API_KEY") == "di-key-1"
        assert all(r.headers.get("x-amz-target") == "AmazonSSM.GetParameters" for r in endpoint.requests)
        up["ssm"] = False
        assert container.api_scope(HR_EVENT).groups == frozenset({"hr", "public"})  # within the TTL: no read
        time.sleep(1.2)
        reads = len(endpoint.requests)
        assert container.api_scope(HR_EVENT) == Scope.public("apikey:k1")  # past it, unreadable: public only
        assert len(endpoint.requests) > reads  # SSM was asked, and failed
        assert container.api_scope(HR_EVENT) == Scope.public("apikey:k1")  # and again (failing fast meanwhile)
        assert container.secrets.get("EMBEDDING_API_KEY") == "di-key-1"  # its own TTL (300 s) still holds
    finally:
        endpoint.stop()


# -- reach: a one-group caller as one match value ----------------------------------------------------------------


def test_the_scope_clause_matches_public_chunks_by_a_recorded_group_only_for_callers_holding_public() -> None:
    from kbsearch.qdrant.query import REACH, filter_json, scope_clause

    def reach(group: str) -> dict[str, Any]:
        return {"key": REACH, "match": {"value": group}}

    def access(*groups: str) -> list[dict[str, Any]]:
        return [{"key": "access", "match": {"value": g}} for g in groups]

    # one group recorded: one match on reach
    assert scope_clause(["public", "hr"], {"hr", "finance"}) == reach("hr")
    assert filter_json(groups=["hr", "public"], reach=frozenset({"hr"})) == {"must": [reach("hr")]}
    # none recorded: the matches on access, public's included
    assert scope_clause(["public", "hr"], {"finance"}) == {"should": access("hr", "public")}
    assert scope_clause(["public", "hr"]) == {"should": access("hr", "public")}
    assert scope_clause(["security", "public", "hr"], {"finance"}) == {"should": access("hr", "public", "security")}
    assert scope_clause(["public"], {"public", "hr"}) == access("public")[0]
    # two or more groups, one recorded at least: the first recorded on reach (in public's place), the rest on access
    assert scope_clause(["public", "security", "hr"], {"hr", "security"}) == {
        "should": [reach("hr"), *access("security")]
    }
    assert scope_clause(["public", "hr", "security"], {"security"}) == {"should": [reach("security"), *access("hr")]}
    assert scope_clause(["public", "oncall", "hr", "security"], {"oncall", "security"}) == {
        "should": [reach("oncall"), *access("hr", "security")]
    }
    # without public (no caller's scope): access alone, whatever is recorded (reach would find public chunks)
    assert scope_clause(["hr"], {"hr"}) == access("hr")[0]
    assert scope_clause(["security", "hr"], {"hr", "security"}) == {"should": access("hr", "security")}
    with pytest.raises(ValueError):
        scope_clause([], {"hr"})
    # a clause of several matches is the filter's own should, beside the request's filters in its must
    assert filter_json(tags=["guide"], groups=["public", "hr", "security"], reach=frozenset({"hr"})) == {
        "must": [{"should": [{"key": "tags", "match": {"any": ["guide"]}}, {"key": "tag_keys", "match": {"any": ["guide"]}}]}], "should": [reach("hr"), *access("security")]
    }  # fmt: skip
    assert filter_json(groups=["public", "hr"]) == {"should": access("hr", "public")}
    assert filter_json(groups=None) is None


def test_reach_never_holds_more_than_a_restricted_chunks_groups() -> None:
    from kbsearch.access import MAX_REACH_GROUPS, FolderRules, reach_of, reach_target

    assert reach_of(["hr"], ["finance", "security"]) == ["hr"]
    assert reach_of(["oncall", "security"], ["hr"]) == ["oncall", "security"]
    assert reach_of([], ["hr"]) == []  # default deny: nobody
    assert reach_of(["public"], ["hr", "finance"]) == ["finance", "hr", "public"]
    assert reach_of(["hr", "public"], []) == ["public"]
    rules = FolderRules.parse(b"hr/: [hr]\nsec/: [security, oncall]\n")
    assert reach_target(["zeta"], [["finance"], None, ["public"]], rules) == [
        "finance", "hr", "oncall", "security", "zeta"
    ]  # fmt: skip
    many = reach_target([f"g{i:03d}" for i in range(3)], [[f"n{i:03d}"] for i in range(100)], FolderRules())
    assert len(many) == MAX_REACH_GROUPS and {"g000", "g001", "g002"} <= set(many)  # recorded ones are kept


# -- group-set tokens: a caller of several groups as one match value ---------------------------------------------


def test_a_set_token_is_no_group_name_and_a_group_name_no_token() -> None:
    from kbsearch.access import normalize_group
    from kbsearch.qdrant.query import reach_sets, reach_token, token_groups

    assert reach_token(["security", "public", "hr"]) == "hr+security" == reach_token({"hr", "security"})
    assert reach_token(["public", "hr"]) is None and reach_token(["hr"]) is None and reach_token([]) is None
    assert token_groups("hr+security") == {"hr", "security"} and token_groups("hr") == {"hr"}
    assert normalize_group("hr+security") is None  # no note, rule or caller can name a token as its group
    assert Scope.parse("k", "hr+security").groups == {"public", "hr", "security"}
    with pytest.raises(CallerMapError):
        CallerMap.parse('{"api_keys": {"k": ["hr+security"]}}')
    # metadata: only tokens as the indexer writes them (sorted, two groups or more, no public) are read
    recorded = {"access_reach_sets": ["hr+security", "security+hr", "hr", "hr+public", "a+b+c", 3, "+"]}
    assert reach_sets(recorded) == set() and reach_sets({"access_reach_sets": ["hr+security", "a+b+c"]}) == {
        "hr+security", "a+b+c"
    }  # fmt: skip
    assert reach_sets(None) == set() and reach_sets({"access_reach_sets": "hr+security"}) == set()


def test_the_caller_maps_sets_of_two_groups_or_more_are_its_tokens() -> None:
    callers = CallerMap.parse(json.dumps({
        "api_keys": {"a": ["hr", "security"], "b": {"name": "x", "groups": ["security", "hr", "public"]},
                     "c": ["hr"], "d": ["public", "finance"], "e": ["finance", "legal", "oncall"]},
        "slack": {"T1": ["staff"], "T1/C1": ["hr", "staff"], "T1/C1/U1": ["oncall", "finance", "legal"]},
    }))  # fmt: skip
    assert callers.set_tokens() == ["finance+legal+oncall", "hr+security", "hr+staff"]
    assert CallerMap.empty().set_tokens() == []
    from kbsearch.access import MAX_TOKEN_CHARS

    long = [f"{c}{'x' * 60}" for c in "ab"]  # a 123-character token: kept; one group more: left out (slower clause)
    kept = CallerMap.parse(json.dumps({"api_keys": {"k": long, "l": [*long, "c" + "x" * 60]}})).set_tokens()
    assert kept == ["+".join(long)] and len(kept[0]) <= MAX_TOKEN_CHARS


@pytest.mark.parametrize("held", [["hr", "security"], ["security", "hr", "public"]])
def test_the_scope_clause_is_one_match_of_a_recorded_token_else_as_before(held: list[str]) -> None:
    from kbsearch.qdrant.query import REACH, filter_json, scope_clause

    def reach(value: str) -> dict[str, Any]:
        return {"key": REACH, "match": {"value": value}}

    scope = Scope.of("k", held).query_groups()
    assert scope is not None
    assert scope_clause(scope, {"hr+security", "hr"}) == reach("hr+security")
    assert filter_json(groups=scope, reach=frozenset({"hr+security"}), tags=["x"]) == {
        "must": [
            reach("hr+security"),
            {"should": [{"key": "tags", "match": {"any": ["x"]}}, {"key": "tag_keys", "match": {"any": ["x"]}}]},
        ]
    }
    # not recorded (another set's token only, or none): the clause of its groups
    assert scope_clause(scope, {"hr+oncall", "hr"}) == {"should": [reach("hr"), {"key": "access",
                                                                                  "match": {"value": "security"}}]}  # fmt: skip
    assert scope_clause(scope, {"hr+security+oncall"})["should"][0] == {"key": "access", "match": {"value": "hr"}}
    # without public (no caller's scope): never reach
    assert scope_clause(["hr", "security"], {"hr+security"}) == {"should": [
        {"key": "access", "match": {"value": "hr"}}, {"key": "access", "match": {"value": "security"}}]}  # fmt: skip


def test_a_token_never_reaches_a_restricted_chunk_of_no_group_of_its_set() -> None:
    from kbsearch.access import MAX_REACH_SETS, reach_of, reach_sets_target
    from kbsearch.qdrant.query import token_groups
    from kbsearch.qdrant.store import reach_fits

    sets = ["finance+legal", "hr+security", "oncall+security"]
    assert reach_of(["hr"], [], sets) == ["hr", "hr+security"]
    assert reach_of(["security"], ["x"], sets) == ["hr+security", "oncall+security", "security"]
    assert reach_of(["finance", "hr"], [], sets) == ["finance", "finance+legal", "hr", "hr+security"]
    assert reach_of(["staff"], [], sets) == ["staff"] and reach_of([], [], sets) == []  # deny: nobody
    assert reach_of(["public"], ["hr"], sets) == ["finance+legal", "hr", "hr+security", "oncall+security", "public"]
    groups = ["hr", "security", "finance", "legal", "oncall", "staff"]
    for n in range(1 << len(groups)):  # every set of groups a chunk may hold
        held = [g for i, g in enumerate(groups) if n >> i & 1]
        reach = reach_of(held, [], sets)
        assert reach_fits(held, reach), held
        for token in sets:
            assert (token in reach) == bool(set(held) & token_groups(token)), (held, token)
    # a token the chunk's groups do not share (an older writer's access change), or one missing: what fits
    assert not reach_fits(["hr"], ["finance+legal", "hr"]) and not reach_fits(["hr"], ["hr", "hr+security", 3])
    assert reach_fits(["hr"], ["hr"]) and reach_fits(["public"], ["public", "hr+security"])
    assert reach_sets_target(["z+y"], ["b+c", "a+b"]) == ["a+b", "b+c", "z+y"]  # recorded ones stay (as read)
    many = reach_sets_target(["x+y"], [f"g{i:03d}+h" for i in range(100)])
    assert len(many) == MAX_REACH_SETS and "x+y" in many and "g099+h" not in many
