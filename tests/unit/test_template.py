"""template.yaml: cfn-lint clean, and the SAM → CloudFormation transform (offline) has the promised shape."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from kbsearch.local.template import Template, load_template

ROOT = Path(__file__).resolve().parents[2]


class _PolicyLoader:
    """Duck-typed managed-policy loader: the transform only needs name → ARN."""

    def load(self) -> dict[str, str]:
        names = ["AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSXRayDaemonWriteAccess"]
        return {n: f"arn:aws:iam::aws:policy/service-role/{n}" for n in names}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    sam = load_template(ROOT / "template.yaml")
    sam = copy.deepcopy(sam)
    for resource in sam["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://kb-search-artifacts/{props[key].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        return transform(sam, {}, _PolicyLoader())


def _methods(cfn: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(path, METHOD) → the method's properties, from the API's inline OpenAPI body."""
    api = next(r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi")
    out = {}
    for path, ops in api["Properties"]["Body"]["paths"].items():
        for method, op in ops.items():
            out[(path, method.upper())] = op
    return out


def _key_required(op: dict[str, Any]) -> bool:
    return any("api_key" in s for s in op.get("security", []))


def test_cfn_lint_reports_nothing() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_api_keys_where_promised(cfn: dict[str, Any]) -> None:
    methods = _methods(cfn)
    assert _key_required(methods[("/search", "POST")])
    assert _key_required(methods[("/search", "GET")])
    assert _key_required(methods[("/mcp", "POST")])
    assert not _key_required(methods[("/health", "GET")])
    assert not _key_required(methods[("/slack/command", "POST")])
    types = {r["Type"] for r in cfn["Resources"].values()}
    assert {"AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey"} <= types
    plan = next(r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::UsagePlan")
    assert plan["Properties"]["Throttle"] and plan["Properties"]["Quota"]
    stage = next(r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage")
    assert "AccessLogSetting" in stage["Properties"]


def _role_policies(cfn: dict[str, Any], function_id: str) -> str:
    fn = cfn["Resources"][function_id]
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    return json.dumps(cfn["Resources"][role_id]["Properties"]["Policies"])


@pytest.mark.parametrize("function_id", ["SearchFunction", "IndexerFunction"])
def test_ssm_read_is_scoped_to_the_prefix(cfn: dict[str, Any], function_id: str) -> None:
    policies = json.loads(_role_policies(cfn, function_id))
    ssm_statements = [
        st
        for p in policies
        for st in p["PolicyDocument"]["Statement"]
        if any(
            str(a).startswith("ssm:Get") for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
        )
    ]
    assert ssm_statements, "no SSM read policy"
    for st in ssm_statements:
        resource = json.dumps(st["Resource"])
        assert "parameter${parameterName}" in resource
        assert "/kb-search/${Stage}/*" in resource or "${SsmPrefix}/*" in resource
        assert '"*"' not in resource.replace("/*", "")


def test_indexer_is_single_and_has_a_failure_destination(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    assert res["IndexerFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1
    assert res["IndexerFunction"]["Properties"]["Timeout"] == 900
    invoke_config = next(r for r in res.values() if r["Type"] == "AWS::Lambda::EventInvokeConfig")
    assert invoke_config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    schedule = next(r for r in res.values() if r["Type"] == "AWS::Scheduler::Schedule")
    assert "Name" not in schedule["Properties"]  # OmitName: two stages never collide
    assert schedule["Properties"]["Target"]["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert schedule["Properties"]["Target"]["DeadLetterConfig"]["Arn"]


def test_search_function_snapstart_alias_and_timeout(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    props = res["SearchFunction"]["Properties"]
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert props["MemorySize"] >= 1024
    assert props["Timeout"] < 29
    assert props["Runtime"] == "python3.13" and props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert any(r["Type"] == "AWS::Lambda::Alias" for r in res.values())


def test_no_secret_values_in_environment(cfn: dict[str, Any]) -> None:
    for logical_id in ("SearchFunction", "IndexerFunction"):
        variables = cfn["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
        for name, value in variables.items():
            text = json.dumps(value)
            assert "resolve:ssm" not in text
            if any(word in name for word in ("KEY", "SECRET", "TOKEN")):
                assert name.endswith("_PARAM"), f"{name} would hold a secret in the environment"


def test_log_groups_have_retention_and_outputs_exist(cfn: dict[str, Any]) -> None:
    groups = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert len(groups) >= 3 and all("RetentionInDays" in g["Properties"] for g in groups)
    assert {"ApiUrl", "ApiKeyId", "KbBucketName"} <= set(cfn["Outputs"])


def test_created_bucket_is_private_encrypted_versioned(cfn: dict[str, Any]) -> None:
    bucket = cfn["Resources"]["KbBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["BucketEncryption"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())


def test_every_handler_points_at_an_existing_function() -> None:
    template = Template(ROOT / "template.yaml")
    assert set(template.function_ids()) >= {"SearchFunction", "IndexerFunction"}
    for logical_id in template.function_ids():
        spec = template.function(logical_id)
        assert spec.module_file.is_file(), spec.module_file
        source = spec.module_file.read_text()
        assert f"def {spec.handler_name}(" in source
        # and it really is importable as a module file with that attribute (compile only: no import side effects)
        assert importlib.util.spec_from_file_location("probe", spec.module_file) is not None
        compile(source, str(spec.module_file), "exec")


def test_layer_builds_with_python313() -> None:
    layer = load_template(ROOT / "template.yaml")["Resources"]["KbSearchLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    assert (ROOT / layer["Properties"]["ContentUri"] / "requirements.txt").is_file()
    assert (ROOT / layer["Properties"]["ContentUri"] / "kbsearch" / "__init__.py").is_file()
