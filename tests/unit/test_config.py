from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
from moto import mock_aws

from kbsearch.config import Endpoint, Secrets, Settings, load_settings
from kbsearch.errors import ConfigError

DEEPINFRA = "di-secret-value-123"
FIREWORKS = "fw-secret-value-456"
SLACK = "slack-signing-secret-789"


@pytest.fixture
def ssm() -> Iterator[object]:
    with mock_aws():
        client = boto3.client("ssm", region_name="us-east-1")
        client.put_parameter(Name="/kb-search/test/deepinfra-api-key", Value=DEEPINFRA, Type="SecureString")
        client.put_parameter(Name="/kb-search/test/fireworks-api-key", Value=FIREWORKS, Type="SecureString")
        client.put_parameter(Name="/kb-search/test/slack-signing-secret", Value=SLACK, Type="SecureString")
        yield client


class CountingSSM(SSMProvider):
    """The real Powertools provider (real boto3 calls to moto), counting the batched fetches."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _get_parameters_by_name(self, *args, **kwargs):
        self.calls += 1
        return super()._get_parameters_by_name(*args, **kwargs)


def _param_settings(**extra: object) -> Settings:
    return Settings(
        embedding_api_key_param="/kb-search/test/deepinfra-api-key",
        reranker_api_key_param="/kb-search/test/deepinfra-api-key",
        embedding_fallback_api_key_param="/kb-search/test/fireworks-api-key",
        slack_signing_secret_param="/kb-search/test/slack-signing-secret",
        **extra,
    )


def test_roles_are_grouped_from_the_same_flat_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "EMBEDDING_FALLBACK_URL": "https://fb.example/v1/embeddings", "EMBEDDING_FALLBACK_PROVIDER": "other",
        "EMBEDDING_FALLBACK_MODEL": "m2", "EMBEDDING_DIMENSIONS": "256", "EMBEDDING_QUERY_TIMEOUT_S": "1.5",
        "PROVIDER_RETRIES": "5", "BREAKER_THRESHOLD": "7", "BREAKER_COOLDOWN_S": "9",
        "RERANKER_FALLBACK_API_STYLE": "native", "RERANK_HEDGE_MS": "0", "RERANK_PASSAGE_TOKENS": "100",
        "EXPANSION_URL": "https://chat.example/v1/chat/completions", "EXPANSION_BUDGET_MS": "250",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert s.embedding.primary == Endpoint(
        "deepinfra", "https://api.deepinfra.com/v1/openai/embeddings", "Qwen/Qwen3-Embedding-8B", "EMBEDDING_API_KEY"
    )
    assert s.embedding.fallback == Endpoint(
        "other", "https://fb.example/v1/embeddings", "m2", "EMBEDDING_FALLBACK_API_KEY"
    )
    assert (s.embedding.dimensions, s.embedding.query_timeout_s, s.embedding.retries) == (256, 1.5, 5)
    assert s.embedding.breaker == s.reranking.breaker == (7, 9.0)
    assert s.reranking.primary.api_style == "auto" and s.reranking.fallback.api_style == "native"
    assert s.reranking.fallback.secret == "RERANKER_FALLBACK_API_KEY"
    assert s.reranking.hedge_s is None and s.reranking.passage_tokens == 100
    assert s.expansion.primary.url == "https://chat.example/v1/chat/completions" and s.expansion.budget_s == 0.25


def test_the_grouped_view_follows_a_copy_with_other_values() -> None:
    s = Settings()
    assert s.embedding.primary.model == "Qwen/Qwen3-Embedding-8B"  # read once: a cached view would stay stale
    copy = s.model_copy(update={"embedding_model": "e5", "rerank_hedge_ms": 250.0})
    assert copy.embedding.primary.model == "e5" and copy.reranking.hedge_s == 0.25
    assert s.embedding.primary.model == "Qwen/Qwen3-Embedding-8B"


def test_an_endpoint_is_usable_with_a_url_and_a_configured_key() -> None:
    endpoint = Endpoint("p", "https://p.example", "m", "RERANKER_FALLBACK_API_KEY")
    assert endpoint.usable({"RERANKER_FALLBACK_API_KEY"})
    assert not endpoint.usable({"RERANKER_API_KEY"})
    assert not endpoint._replace(url="").usable({"RERANKER_FALLBACK_API_KEY"})


def test_defaults_are_the_real_providers() -> None:
    s = Settings()
    assert s.embedding_url == "https://api.deepinfra.com/v1/openai/embeddings"
    assert s.embedding_model == "Qwen/Qwen3-Embedding-8B"
    assert s.reranker_url == "https://api.deepinfra.com/v1/inference/Qwen/Qwen3-Reranker-8B"
    assert s.reranker_fallback_url == "https://api.fireworks.ai/inference/v1/rerank"
    assert s.reranker_fallback_model == "accounts/fireworks/models/qwen3-reranker-8b"
    assert s.embedding_fallback_model == "fireworks/qwen3-embedding-8b"
    assert s.store_kind == "embedded"
    assert s.qdrant_path == ".kbsearch/qdrant"


def test_environment_names_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_URL", "https://example.cloud.qdrant.io:6333")
    monkeypatch.setenv("QDRANT_COLLECTION", "notes")
    monkeypatch.setenv("EMBEDDING_API_KEY", "k1")
    monkeypatch.setenv("KB_SOURCE", "s3://bucket/kb/")
    s = load_settings()
    assert s.store_kind == "cloud"
    assert s.qdrant_collection == "notes"
    assert s.kb_source == "s3://bucket/kb/"
    assert Secrets(s).get("EMBEDDING_API_KEY") == "k1"


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("QDRANT_COLLECTION=from-dotenv\nEXPANSION_API_KEY=dotenv-key\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.qdrant_collection == "from-dotenv"
    assert Secrets(s).get("EXPANSION_API_KEY") == "dotenv-key"


def test_secure_strings_are_read_decrypted_in_one_batch_and_cached(ssm) -> None:
    provider = CountingSSM()
    secrets = Secrets(_param_settings(), ssm=provider)
    assert secrets.get("EMBEDDING_API_KEY") == DEEPINFRA
    assert secrets.get("RERANKER_API_KEY") == DEEPINFRA
    assert secrets.get("EMBEDDING_FALLBACK_API_KEY") == FIREWORKS
    assert secrets.get("SLACK_SIGNING_SECRET") == SLACK
    assert secrets.get("QDRANT_API_KEY") is None  # neither a value nor a parameter name
    assert provider.calls == 1  # one batched GetParameters for every name, then the cache


def test_refresh_refetches_after_rotation(ssm) -> None:
    provider = CountingSSM()
    secrets = Secrets(_param_settings(), ssm=provider)
    assert secrets.get("EMBEDDING_API_KEY") == DEEPINFRA
    ssm.put_parameter(Name="/kb-search/test/deepinfra-api-key", Value="rotated", Type="SecureString", Overwrite=True)
    assert secrets.get("EMBEDDING_API_KEY") == DEEPINFRA  # cached within the TTL
    secrets.refresh()
    assert secrets.get("EMBEDDING_API_KEY") == "rotated"
    assert provider.calls == 2


def test_ttl_zero_always_refetches(ssm) -> None:
    provider = CountingSSM()
    secrets = Secrets(_param_settings(secrets_ttl_s=0), ssm=provider)
    secrets.get("EMBEDDING_API_KEY")
    secrets.get("EMBEDDING_API_KEY")
    assert provider.calls == 2


def test_plain_value_wins_over_parameter(ssm) -> None:
    provider = CountingSSM()
    secrets = Secrets(_param_settings(embedding_api_key="plain"), ssm=provider)
    assert secrets.get("EMBEDDING_API_KEY") == "plain"
    assert provider.calls == 0


def test_missing_parameter_is_unset_with_a_warning_naming_it(ssm, caplog) -> None:
    caplog.set_level(logging.WARNING)
    secrets = Secrets(_param_settings(qdrant_api_key_param="/kb-search/test/qdrant-api-key"), ssm=CountingSSM())
    assert secrets.get("QDRANT_API_KEY") is None
    assert secrets.get("EMBEDDING_API_KEY") == DEEPINFRA
    assert "/kb-search/test/qdrant-api-key" in caplog.text


def test_ssm_unreachable_is_a_config_error_without_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    secrets = Secrets(_param_settings(embedding_fallback_api_key="fw-plain-secret"))
    with pytest.raises(ConfigError, match="cannot read secrets from SSM") as info:
        secrets.get("EMBEDDING_API_KEY")
    assert "fw-plain-secret" not in str(info.value)


def test_missing_required_setting_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "kb-search-dev-search")
    with pytest.raises(ConfigError, match="missing required setting QDRANT_URL"):
        load_settings()
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")  # local invoke: the embedded store is fine
    assert load_settings().store_kind == "embedded"


def test_invalid_setting_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "lots")
    with pytest.raises(ConfigError, match="invalid setting EMBEDDING_DIMENSIONS"):
        load_settings()


def test_secret_values_never_reach_logs_or_reprs(ssm, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("kbsearch.test")
    settings = _param_settings(qdrant_api_key="qdrant-plain-secret", qdrant_api_key_param="/missing/param")
    secrets = Secrets(settings, ssm=CountingSSM())
    for name in ("EMBEDDING_API_KEY", "EMBEDDING_FALLBACK_API_KEY", "SLACK_SIGNING_SECRET", "QDRANT_API_KEY"):
        secrets.get(name)
    secrets.refresh()
    logger.info("settings %s secrets %r", settings, secrets)
    logger.info("dump %s", settings.model_dump())
    text = caplog.text + repr(settings) + str(settings) + repr(secrets)
    for value in (DEEPINFRA, FIREWORKS, SLACK, "qdrant-plain-secret"):
        assert value not in text


def test_dotenv_lines_read_as_python_dotenv_reads_them(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "# a comment\n"
        "export QDRANT_COLLECTION=exported\n"
        'kb_base_url = "https://kb.example.com/notes"  \n'
        "KB_SOURCE='s3://bucket/kb # not a comment'\n"
        "SNIPPET_CHARS=120 # a comment after a value\n"
        "A LINE WITHOUT AN EQUALS SIGN\n"
        "SLACK_RESPONSE_HOSTS=\n"
    )
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.qdrant_collection == "exported" and s.kb_base_url == "https://kb.example.com/notes"
    assert s.kb_source == "s3://bucket/kb # not a comment" and s.snippet_chars == 120
    assert s.slack_response_hosts == ""


def test_overrides_then_environment_then_dotenv(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("QDRANT_COLLECTION=from-dotenv\nRRF_K=7\nSNIPPET_CHARS=99\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("qdrant_collection", "from-env")  # any case
    monkeypatch.setenv("RRF_K", "5")
    s = load_settings(rrf_k=9)
    assert (s.qdrant_collection, s.rrf_k, s.snippet_chars) == ("from-env", 9, 99)
    assert Settings.model_validate({"rrf_k": 3}).model_dump(include={"qdrant_collection", "rrf_k"}) == {
        "qdrant_collection": "from-env",
        "rrf_k": 3,
    }


DOTENV_LINES = [
    "# a whole-line comment",
    "export A=1",
    'B = "two words"  ',
    "C='x # y'",
    "D=plain # comment",
    'E="line\\nnext"',
    'QDRANT_URL="https://xyz.cloud.qdrant.io" # prod',
    "EMBEDDING_API_KEY='sk-abc'  # rotate monthly",
    "QDRANT_COLLECTION=kb\t# dev",
    'G="q\\"uote\\\\d"#c',
    "H='it\\'s'",
    "I=a#b",
    "J=",
    "K = spaced value  ",
    # 'L="unterminated': python-dotenv skips it with a warning; here a ConfigError naming it (test_adv32)
    "M=\"'mixed'\"",
    "N='\"'",
    "A LINE WITHOUT AN EQUALS SIGN",
    "  indented=yes",
]


@pytest.mark.parametrize("line", DOTENV_LINES)
def test_each_dotenv_line_reads_as_python_dotenv_reads_it(tmp_path, line: str) -> None:
    """python-dotenv (what pydantic-settings used) is the oracle, ${VAR} interpolation aside."""
    from dotenv import dotenv_values as oracle

    from kbsearch.config import dotenv_values

    path = tmp_path / ".env"
    path.write_text(line + "\n")
    expected = {k: v for k, v in oracle(path, interpolate=False).items() if v is not None}
    assert dotenv_values(path) == expected


def test_a_dotenv_that_is_not_a_regular_file_is_ignored(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO would block the read forever; a directory has nothing to read."""
    import os

    os.mkfifo(tmp_path / ".env")
    monkeypatch.chdir(tmp_path)
    assert load_settings().qdrant_collection == "kb"


@pytest.mark.parametrize("content", [b"\xff\xfe not utf-8", None])
def test_an_unreadable_dotenv_is_a_config_error(tmp_path, monkeypatch: pytest.MonkeyPatch, content: Any) -> None:
    if content is None:
        (tmp_path / ".env").symlink_to(tmp_path / ".env")  # a loop: reading it fails
    else:
        (tmp_path / ".env").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"cannot read \.env"):
        load_settings()
