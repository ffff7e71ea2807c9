"""template.yaml: cfn-lint clean, and the SAM → CloudFormation transform (offline) has the promised shape."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from kbsearch.sources import is_note_name
from kbsearch_tools.local.template import Template, load_template
from kbsearch_tools.s3events import NOTE_SUFFIXES, NOTIFIED_EVENTS

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


@pytest.mark.parametrize("extra", [[], ["--append-rules", "cfn_lint_serverless.rules"]], ids=["cfn", "serverless"])
def test_cfn_lint_reports_nothing(extra: list[str]) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), *extra, "--", str(ROOT / "template.yaml")],
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
    assert _key_required(methods[("/notes/{path+}", "GET")]) and _key_required(methods[("/notes", "GET")])
    assert not _key_required(methods[("/health", "GET")])
    assert not _key_required(methods[("/slack/command", "POST")])
    assert not _key_required(methods[("/slack/interactive", "POST")])
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


def _statements(cfn: dict[str, Any], function_id: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(condition, statement) of every inline statement of the function's role; a statement under
    ``Fn::If`` is reported with its condition (the false branch is AWS::NoValue)."""
    out: list[tuple[str | None, dict[str, Any]]] = []
    for policy in json.loads(_role_policies(cfn, function_id)):
        for st in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in st:
                condition, yes, no = st["Fn::If"]
                assert no == {"Ref": "AWS::NoValue"}
                out.append((condition, yes))
            else:
                out.append((None, st))
    return out


def _actions(st: dict[str, Any]) -> set[str]:
    return set(st["Action"] if isinstance(st["Action"], list) else [st["Action"]])


_PREFIX = {"Fn::If": ["DefaultSsmPrefix", {"Fn::Sub": "/kb-search/${Stage}"}, {"Ref": "SsmPrefix"}]}
_BUCKET = {"Fn::If": ["CreateKbBucket", {"Ref": "KbBucket"}, {"Ref": "KbBucketName"}]}


def _ssm_resources(cfn: dict[str, Any], function_id: str) -> set[str]:
    """The SSM parameter names (the part after the prefix) the function may read."""
    names = set()
    for _, st in _statements(cfn, function_id):
        if any(a.startswith("ssm:") for a in _actions(st)):
            assert _actions(st) <= {"ssm:GetParameters", "ssm:GetParameter"}, st
            for resource in st["Resource"]:
                template, variables = resource["Fn::Sub"]
                assert template.startswith("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter")
                assert variables == {"Prefix": _PREFIX}
                names.add(template.rsplit("${Prefix}/", 1)[1])
    return names


def _env_params(cfn: dict[str, Any], function_id: str) -> set[str]:
    """The SSM names (the part after the prefix) the function's environment tells it to read (``*_PARAM``)."""
    variables = cfn["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    return {v["Fn::Sub"][0].rsplit("/", 1)[1] for k, v in variables.items() if k.endswith("_PARAM")}


@pytest.mark.parametrize(
    ("function_id", "secrets"),
    [
        ("IndexerFunction", {"qdrant-api-key", "deepinfra-api-key", "fireworks-api-key", "access-groups"}),
        ("SlackWorkerFunction", {"qdrant-api-key", "deepinfra-api-key", "fireworks-api-key", "access-groups"}),
        (
            "SearchFunction",
            {"qdrant-api-key", "deepinfra-api-key", "fireworks-api-key", "slack-signing-secret", "access-groups"},
        ),
    ],
)
def test_each_function_reads_only_its_own_secrets(cfn: dict[str, Any], function_id: str, secrets: set[str]) -> None:
    """Point 10: exact parameter ARNs per function (the indexer never reads the Slack signing secret), exactly
    the ones its environment names, no ssm:DescribeParameters, and kms:Decrypt only for a customer key."""
    assert _ssm_resources(cfn, function_id) == secrets == _env_params(cfn, function_id)
    policies = _role_policies(cfn, function_id)
    assert "DescribeParameters" not in policies and "ssm:*" not in policies
    kms = [(cond, st) for cond, st in _statements(cfn, function_id) if "kms:Decrypt" in _actions(st)]
    assert len(kms) == 1
    condition, st = kms[0]
    assert condition == "HasSsmKmsKey" and st["Resource"] == {"Ref": "SsmKmsKeyArn"}
    assert st["Condition"]["StringEquals"]["kms:ViaService"] == {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}
    assert cfn["Conditions"]["HasSsmKmsKey"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SsmKmsKeyArn"}, ""]}]}


@pytest.mark.parametrize("function_id", ["IndexerFunction", "SearchFunction"])
def test_s3_read_only_under_the_kb_prefix(cfn: dict[str, Any], function_id: str) -> None:
    s3 = [st for _, st in _statements(cfn, function_id) if any(a.startswith("s3:") for a in _actions(st))]
    by_action = {a: st for st in s3 for a in _actions(st)}
    assert set(by_action) == {"s3:ListBucket", "s3:GetObject"}
    get = by_action["s3:GetObject"]["Resource"]["Fn::Sub"]
    assert get == ["arn:${AWS::Partition}:s3:::${Bucket}/${KbPrefix}*", {"Bucket": _BUCKET}]
    listing = by_action["s3:ListBucket"]
    assert listing["Resource"]["Fn::Sub"] == ["arn:${AWS::Partition}:s3:::${Bucket}", {"Bucket": _BUCKET}]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${KbPrefix}*"}}}
    assert "S3ReadPolicy" not in _role_policies(cfn, function_id)


def test_slack_worker_touches_no_bucket_and_only_claims_and_releases(cfn: dict[str, Any]) -> None:
    policies = _role_policies(cfn, "SlackWorkerFunction")
    assert "s3:" not in policies
    dynamo = [st for _, st in _statements(cfn, "SlackWorkerFunction") if "dynamodb:PutItem" in _actions(st)]
    assert len(dynamo) == 2 and _actions(dynamo[0]) == {"dynamodb:PutItem", "dynamodb:DeleteItem"}
    assert dynamo[0]["Resource"] == {"Fn::GetAtt": ["SlackDedupeTable", "Arn"]}
    assert _actions(dynamo[1]) == {"dynamodb:PutItem"}  # votes: put only (export reads with the operator's role)
    assert dynamo[1]["Resource"] == {"Fn::GetAtt": ["SlackFeedbackTable", "Arn"]}
    for function_id in ("SearchFunction", "IndexerFunction", "SlackWorkerFunction"):
        text = _role_policies(cfn, function_id)
        assert "dynamodb:Scan" not in text and "BatchWrite" not in text and "dynamodb:*" not in text


#: What kbsearch.lease calls on the lease table; tests/integration/test_lease.py checks the module uses no more.
LEASE_ACTIONS = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:GetItem"}
#: What kbsearch.sequencers calls on the same table (the last S3 sequencer applied per note).
SEQUENCER_ACTIONS = {"dynamodb:BatchGetItem", "dynamodb:PutItem"}


def test_indexer_runs_one_at_a_time_without_reserved_concurrency(cfn: dict[str, Any]) -> None:
    """Point 3: no reserved concurrency unless asked for; the lease table and the rights the lease needs."""
    res = cfn["Resources"]
    props = res["IndexerFunction"]["Properties"]
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["ReserveIndexerConcurrency", {"Ref": "IndexerReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert cfn["Parameters"]["IndexerReservedConcurrency"]["Default"] == 0
    assert cfn["Conditions"]["ReserveIndexerConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "IndexerReservedConcurrency"}, 0]}]
    }
    assert props["Environment"]["Variables"]["INDEX_LEASE_TABLE"] == {"Ref": "IndexerLeaseTable"}
    table = res["IndexerLeaseTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    statements = _statements(cfn, "IndexerFunction")
    dynamo = [st for _, st in statements if any(a.startswith("dynamodb:") for a in _actions(st))]
    assert all(st["Resource"] == {"Fn::GetAtt": ["IndexerLeaseTable", "Arn"]} for st in dynamo)
    assert sorted(sorted(_actions(st)) for st in dynamo) == sorted([sorted(LEASE_ACTIONS), sorted(SEQUENCER_ACTIONS)])
    assert props["Timeout"] == 900


def test_scheduler_dead_letters_go_to_the_alarmed_queue(cfn: dict[str, Any]) -> None:
    """Point 5: DeadLetterConfig by Arn (SAM ignores Destination and makes an unalarmed queue of its own)."""
    res = cfn["Resources"]
    schedule = next(r for r in res.values() if r["Type"] == "AWS::Scheduler::Schedule")
    assert "Name" not in schedule["Properties"]  # OmitName: two stages never collide
    target = schedule["Properties"]["Target"]
    dlq = {"Fn::GetAtt": ["IndexerDeadLetterQueue", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": dlq}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    queues = sorted(k for k, r in res.items() if r["Type"] == "AWS::SQS::Queue")
    assert queues == [  # SAM made no queue of its own
        "IndexerDeadLetterQueue",
        "IndexerEventDeadLetterQueue",
        "IndexerEventQueue",
        "SlackDeadLetterQueue",
    ]
    role = res[target["RoleArn"]["Fn::GetAtt"][0]]["Properties"]["Policies"]
    sends = [st for p in role for st in p["PolicyDocument"]["Statement"] if st["Action"] == "sqs:SendMessage"]
    assert [st["Resource"] for st in sends] == [dlq]
    invoke_config = res["IndexerFunctionEventInvokeConfig"]["Properties"]
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == dlq
    alarm = res["IndexerFailureAlarm"]["Properties"]
    queue_name = {"Fn::GetAtt": ["IndexerDeadLetterQueue", "QueueName"]}
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": queue_name}]


def test_retry_story_is_what_readme_says(cfn: dict[str, Any]) -> None:
    """Point 7: one try per scheduled run (async retries 0), scheduler retries only for delivery, and README
    says exactly that with the template's numbers."""
    res = cfn["Resources"]
    assert res["IndexerFunctionEventInvokeConfig"]["Properties"]["MaximumRetryAttempts"] == 0
    schedule = next(r for r in res.values() if r["Type"] == "AWS::Scheduler::Schedule")
    delivery_retries = schedule["Properties"]["Target"]["RetryPolicy"]["MaximumRetryAttempts"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "retries from the scheduler" not in readme
    assert "A failed run is not retried" in readme
    assert f"retries only the delivery of the event, up to {delivery_retries} times" in readme


def _alarms(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in cfn["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def _metric_of(alarm: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    if "MetricName" in alarm:
        return [(alarm["Namespace"], alarm["MetricName"], alarm.get("Dimensions", []))]
    stats = [q["MetricStat"]["Metric"] for q in alarm["Metrics"] if "MetricStat" in q]
    return [(m["Namespace"], m["MetricName"], m.get("Dimensions", [])) for m in stats]


def test_every_alarm_tells_the_topic(cfn: dict[str, Any]) -> None:
    """Point 6: one SNS topic, every alarm's action, an optional e-mail subscription."""
    alarms = _alarms(cfn)
    assert len(alarms) >= 7
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["TreatMissingData"] == "notBreaching", name
    subscription = cfn["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    expected = {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}
    assert subscription["Properties"] == expected
    assert cfn["Parameters"]["AlarmEmail"]["Default"] == ""
    pattern = re.compile(cfn["Parameters"]["AlarmEmail"]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("ops@example.com") and not pattern.fullmatch("not-an-email")


def test_alarms_cover_each_failure(cfn: dict[str, Any]) -> None:
    """Point 6: indexer DLQ, scheduler delivery, Slack DLQ, API 5xx, search p99 over the budget and the share of
    degraded answers, on the metrics the template's own resources and the search handler produce."""
    res = cfn["Resources"]
    alarms = _alarms(cfn)
    flat = [found for alarm in alarms.values() for found in _metric_of(alarm)]
    for queue in ("IndexerDeadLetterQueue", "SlackDeadLetterQueue"):
        dims = [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", dims) in flat, queue
    schedule = next(r for r in res.values() if r["Type"] == "AWS::Scheduler::Schedule")
    assert schedule["Properties"]["GroupName"] == {"Ref": "IndexerScheduleGroup"}
    group = [{"Name": "ScheduleGroup", "Value": {"Ref": "IndexerScheduleGroup"}}]
    scheduler = {metric for ns, metric, dims in flat if ns == "AWS/Scheduler" and dims == group}
    assert scheduler == {"InvocationDroppedCount", "InvocationsFailedToBeSentToDeadLetterCount"}
    api = [
        {"Name": "ApiName", "Value": res["KbApi"]["Properties"]["Name"]},
        {"Name": "Stage", "Value": {"Ref": "Stage"}},
    ]
    assert ("AWS/ApiGateway", "5XXError", api) in flat
    variables = res["SearchFunction"]["Properties"]["Environment"]["Variables"]
    own = [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]
    namespace = variables["POWERTOOLS_METRICS_NAMESPACE"]
    latency = alarms["SearchLatencyAlarm"]
    assert latency["ExtendedStatistic"] == "p99" and latency["Threshold"] == {"Ref": "SearchLatencyBudgetMs"}
    assert _metric_of(latency) == [(namespace, "Latency_total", own)]
    degraded = alarms["DegradedShareAlarm"]
    assert {q["MetricStat"]["Stat"] for q in degraded["Metrics"] if "MetricStat" in q} == {"Sum", "SampleCount"}
    assert _metric_of(degraded) == [(namespace, "Degraded", own)] * 2
    assert degraded["Threshold"] == {"Ref": "DegradedShareThreshold"}


def test_no_stage_named_stage_and_docs_behind_the_key(cfn: dict[str, Any]) -> None:
    """Points 8 and 9: OpenApiVersion is set, so the deployment makes no extra stage named "Stage" (no logs, no
    throttling, open routes); /docs and /openapi.json need the API key like /search."""
    res = cfn["Resources"]
    stages = [r for r in res.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert len(stages) == 1 and stages[0]["Properties"]["StageName"] == {"Ref": "Stage"}
    for deployment in (r for r in res.values() if r["Type"] == "AWS::ApiGateway::Deployment"):
        assert "StageName" not in deployment["Properties"]
    methods = _methods(cfn)
    assert _key_required(methods[("/docs", "GET")]) and _key_required(methods[("/openapi.json", "GET")])
    public = {route for route, op in methods.items() if not _key_required(op)}
    assert public == {("/health", "GET"), ("/slack/command", "POST"), ("/slack/interactive", "POST")}


def test_api_gateway_account_role_for_access_logs(cfn: dict[str, Any]) -> None:
    """Point 2: a fresh account has no API Gateway CloudWatch role; the stack creates it (unless told the account
    has one) and the stage waits for it."""
    res = cfn["Resources"]
    assert cfn["Parameters"]["CreateApiGatewayAccount"]["Default"] == "true"
    account = res["ApiGatewayAccount"]
    assert account["Condition"] == "CreateApiGatewayAccountRole"
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    role = res["ApiGatewayCloudWatchRole"]
    assert role["Condition"] == "CreateApiGatewayAccountRole" and role["DeletionPolicy"] == "Retain"
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert role["Properties"]["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
    ]
    stage = next(r for r in res.values() if r["Type"] == "AWS::ApiGateway::Stage")
    destination = stage["Properties"]["AccessLogSetting"]["DestinationArn"]
    log_group = {"Fn::GetAtt": ["AccessLogGroup", "Arn"]}
    assert destination == {
        "Fn::If": [
            "CreateApiGatewayAccountRole",
            {"Fn::Select": [0, [log_group, {"Ref": "ApiGatewayAccount"}]]},
            log_group,
        ]
    }


def test_qdrant_url_is_required_and_https(cfn: dict[str, Any]) -> None:
    """Point 1: CloudFormation refuses a missing or non-https URL up front, with a message saying what it wants."""
    param = cfn["Parameters"]["QdrantUrl"]
    assert "Default" not in param
    assert "https" in param["ConstraintDescription"]
    pattern = re.compile(param["AllowedPattern"])
    assert pattern.fullmatch("https://xyz.eu-central-1-0.aws.cloud.qdrant.io:6333")
    assert pattern.fullmatch("https://qdrant.example.com/")
    for bad in ("", "http://xyz.cloud.qdrant.io:6333", "xyz.cloud.qdrant.io", "https://", "https://a b"):
        assert not pattern.fullmatch(bad), bad


def test_search_function_snapstart_switch_alias_and_timeout(cfn: dict[str, Any]) -> None:
    """Point 4: SnapStart by default, off by a parameter for regions without SnapStart for Python."""
    res = cfn["Resources"]
    props = res["SearchFunction"]["Properties"]
    assert props["SnapStart"] == {"ApplyOn": {"Fn::If": ["SnapStartOn", "PublishedVersions", "None"]}}
    assert cfn["Parameters"]["EnableSnapStart"]["Default"] == "true"
    assert cfn["Conditions"]["SnapStartOn"] == {"Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]}
    assert props["MemorySize"] >= 1024
    assert props["Timeout"] < 29
    assert props["Runtime"] == "python3.13" and props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert any(r["Type"] == "AWS::Lambda::Alias" for r in res.values())


def test_make_lint_runs_the_serverless_rules_and_checkov() -> None:
    """Done-when: the scanners run in make lint, and every suppression in the template carries its reason."""
    makefile = (ROOT / "Makefile").read_text()
    assert "--append-rules cfn_lint_serverless.rules" in makefile and "$(CHECKOV) --file template.yaml" in makefile
    template = load_template(ROOT / "template.yaml")
    skips = 0
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]) and len(skip["comment"]) > 30, name
            skips += 1
    assert skips > 0
    for line in (ROOT / "template.yaml").read_text().splitlines():
        if line.strip().startswith("cfn-lint:"):
            assert "#" in line and len(line.split("#", 1)[1].strip()) > 30, line


def test_no_secret_values_in_environment(cfn: dict[str, Any]) -> None:
    for logical_id in ("SearchFunction", "IndexerFunction", "SlackWorkerFunction"):
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


def test_layer_builds_from_the_lock() -> None:
    """Point 12: the layer is built by layers/kbsearch/Makefile from the locked requirements.txt."""
    layer = load_template(ROOT / "template.yaml")["Resources"]["KbSearchLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile" and layer["Metadata"]["BuildArchitecture"] == "arm64"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    content = ROOT / layer["Properties"]["ContentUri"]
    assert "build-KbSearchLayer:" in (content / "Makefile").read_text()
    assert (content / "requirements.txt").is_file()
    assert (content / "kbsearch" / "__init__.py").is_file()


def test_s3_changes_reach_the_indexer_through_a_queue(cfn: dict[str, Any]) -> None:
    """Freshness: the created bucket notifies the event queue of every .md change under the prefix; the queue has
    a dead-letter queue (alarmed), a visibility timeout of 6x the indexer's, and a policy that lets S3 (this
    account) and the EventBridge rule send; the SQS event source batches, reports item failures and caps
    concurrency, all from parameters."""
    res, params = cfn["Resources"], cfn["Parameters"]
    arn = {"Fn::GetAtt": ["IndexerEventQueue", "Arn"]}
    notifications = res["KbBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert [n["Event"] for n in notifications] == list(NOTIFIED_EVENTS) * (len(NOTE_SUFFIXES) + 1)
    # the notes (.md in each casing), then the access file at the KB root: suffixes that do not overlap (S3 refuses
    # overlapping rules)
    suffixes = [s for s in NOTE_SUFFIXES for _ in NOTIFIED_EVENTS] + ["_access.yaml"] * len(NOTIFIED_EVENTS)
    for n, suffix in zip(notifications, suffixes, strict=True):
        assert n["Queue"] == arn
        with_prefix, without = n["Filter"]["S3Key"]["Rules"]["Fn::If"][1:]
        assert with_prefix == [{"Name": "prefix", "Value": {"Ref": "KbPrefix"}}, {"Name": "suffix", "Value": suffix}]
        assert without == [{"Name": "suffix", "Value": suffix}]
    assert "IndexerEventQueuePolicy" in res["KbBucket"]["DependsOn"]
    queue = res["IndexerEventQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * res["IndexerFunction"]["Properties"]["Timeout"]
    assert queue["MaximumMessageSize"] >= 64 * 1024 and queue["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["IndexerEventDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    statements = res["IndexerEventQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    s3, rule = (st["Fn::If"][1] for st in statements[:2])
    assert statements[0]["Fn::If"][0] == "CreateKbBucket" and statements[1]["Fn::If"][0] == "UseExistingBucket"
    assert s3["Principal"] == {"Service": "s3.amazonaws.com"} and s3["Action"] == "sqs:SendMessage"
    assert s3["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "aws:SourceArn" in s3["Condition"]["ArnLike"]
    assert rule["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["KbObjectEventsRule", "Arn"]}}}
    mapping = next(r for r in res.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["EventSourceArn"] == arn
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["MaximumBatchingWindowInSeconds"] == {"Ref": "EventBatchingWindowSeconds"}
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "EventMaxConcurrency"}}
    assert params["EventBatchingWindowSeconds"]["Default"] == 10 and params["EventMaxConcurrency"]["MinValue"] == 2
    assert params["IndexSchedule"]["Default"] == "rate(1 hour)"  # the reconciler, no longer the freshness path


def test_an_existing_bucket_sends_through_an_eventbridge_rule(cfn: dict[str, Any]) -> None:
    res = cfn["Resources"]
    rule = res["KbObjectEventsRule"]
    assert rule["Condition"] == "UseExistingBucket"
    assert cfn["Conditions"]["UseExistingBucket"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "KbBucketName"}, ""]}]}
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created", "Object Deleted"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "KbBucketName"}]
    assert pattern["detail"]["object"]["key"] == [
        *({"wildcard": {"Fn::Sub": f"${{KbPrefix}}*{suffix}"}} for suffix in NOTE_SUFFIXES),
        {"wildcard": {"Fn::Sub": "${KbPrefix}*_access.yaml"}},
    ]  # fmt: skip
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["IndexerEventQueue", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["IndexerEventDeadLetterQueue", "Arn"]}}
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "KbBucketName" in readme and "Send notifications to Amazon EventBridge" in readme


NOTE_CASINGS = [a + b for a in "mM" for b in "dD"]


def _s3_rule_matches(rules: list[dict[str, Any]], key: str) -> bool:
    """S3's object key name filter (case-sensitive): the key starts with the prefix rule and ends with the suffix."""
    values = {rule["Name"]: rule["Value"] for rule in rules}
    return key.startswith(values.get("prefix", "")) and key.endswith(values.get("suffix", ""))


def _wildcard_matches(pattern: str, key: str) -> bool:
    """EventBridge's ``wildcard`` (case-sensitive; ``*`` any run of characters)."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), key, re.DOTALL) is not None


@pytest.mark.parametrize("prefix", ["kb/", ""])
def test_every_casing_of_md_raises_a_change_event_under_the_prefix_only(cfn: dict[str, Any], prefix: str) -> None:
    """A note is ``.md`` in any case (``sources.is_note_name``: the full sync and the event handler take ``x.MD``),
    and S3's suffix rules and EventBridge's wildcards are case-sensitive: every casing has its rule, for every event
    type, the KB prefix still applied (the rules matched `.md` alone: a `Guide.MD` saved raised no event, its change
    waited for the hourly sync). The bucket's rules do not overlap (S3 refuses a configuration whose rules do: no
    key matches two rules of one event type)."""
    res = cfn["Resources"]
    notifications = res["KbBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    pick = 1 if prefix else 2  # Fn::If [HasKbPrefix, with the prefix rule, without]
    rules = [(n["Event"], [dict(r, Value=prefix if r["Name"] == "prefix" else r["Value"])
                           for r in n["Filter"]["S3Key"]["Rules"]["Fn::If"][pick]]) for n in notifications]  # fmt: skip
    wildcards = [k["wildcard"]["Fn::Sub"].replace("${KbPrefix}", prefix)
                 for k in res["KbObjectEventsRule"]["Properties"]["EventPattern"]["detail"]["object"]["key"]]  # fmt: skip
    for casing in NOTE_CASINGS:
        for key in (f"{prefix}Guide.{casing}", f"{prefix}Справка/Заметка.{casing}"):
            assert is_note_name(key)
            for event in NOTIFIED_EVENTS:
                assert sum(_s3_rule_matches(r, key) for e, r in rules if e == event) == 1, (key, event)
            assert any(_wildcard_matches(w, key) for w in wildcards), key
    outside = ["other/Guide.MD", "Guide.MD.txt", f"{prefix}Guide.mdx", f"{prefix}Guide.markdown"]
    for key in outside[0 if prefix else 1 :]:
        assert not any(_s3_rule_matches(r, key) for _, r in rules), key
        assert not any(_wildcard_matches(w, key) for w in wildcards), key


def test_freshness_alarms_and_the_indexer_rights_for_events(cfn: dict[str, Any]) -> None:
    alarms = _alarms(cfn)
    dims = [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["IndexerEventDeadLetterQueue", "QueueName"]}}]
    assert _metric_of(alarms["IndexerEventFailureAlarm"]) == [("AWS/SQS", "ApproximateNumberOfMessagesVisible", dims)]
    lag = alarms["IndexLagAlarm"]
    service = [{"Name": "service", "Value": "kb-search"}]  # the indexer's POWERTOOLS_SERVICE_NAME (Globals)
    assert _metric_of(lag) == [("KbSearch", "IndexLagSeconds", service)]
    assert lag["Statistic"] == "Maximum" and lag["Threshold"] == {"Ref": "IndexLagThresholdSeconds"}
    variables = cfn["Resources"]["IndexerFunction"]["Properties"]["Environment"]["Variables"]
    assert variables.get("POWERTOOLS_SERVICE_NAME", "kb-search") == "kb-search"
    retry = [st for _, st in _statements(cfn, "IndexerFunction") if "sqs:ChangeMessageVisibility" in _actions(st)]
    assert len(retry) == 1 and retry[0]["Resource"] == {"Fn::GetAtt": ["IndexerEventQueue", "Arn"]}


def test_several_api_keys_and_their_groups_parameter(cfn: dict[str, Any]) -> None:
    """Access scopes: extra keys (ExtraApiKeys) and existing keys (ExistingApiKeyIds) join the usage plan SAM
    makes; /whoami is behind the key; both functions that search read the caller mapping by name at run time."""
    resources = cfn["Resources"]
    plan_id = next(k for k, r in resources.items() if r["Type"] == "AWS::ApiGateway::UsagePlan")
    for n in (2, 3, 4):
        assert resources[f"KbApiKey{n}"]["Condition"] == f"CreateApiKey{n}"
        link = resources[f"KbApiUsagePlanKey{n}"]
        assert link["Properties"] == {"KeyId": {"Ref": f"KbApiKey{n}"}, "KeyType": "API_KEY",
                                      "UsagePlanId": {"Ref": plan_id}}  # fmt: skip
    for n in (1, 2, 3):
        existing = resources[f"ExistingApiUsagePlanKey{n}"]
        assert existing["Condition"] == f"HasExistingApiKey{n}"
        assert existing["Properties"]["UsagePlanId"] == {"Ref": plan_id}
    assert _key_required(_methods(cfn)[("/whoami", "GET")])
    for function_id in ("SearchFunction", "SlackWorkerFunction", "IndexerFunction"):  # the indexer: reach tokens
        variables = resources[function_id]["Properties"]["Environment"]["Variables"]
        assert variables["ACCESS_GROUPS_PARAM"]["Fn::Sub"][0] == "${Prefix}/access-groups"
    assert {"ExtraApiKeyIds", "AccessGroupsParameter"} <= set(cfn["Outputs"])


def test_slack_commands_take_only_names_slack_can_declare(cfn: dict[str, Any]) -> None:
    """Round 36 (rel36): Slack's app manifest takes a slash command of at most 32 characters with its leading `/`
    (`features.slash_commands[].command`); `SlackCommands` (and `SLACK_COMMANDS`, the same pattern) took any length,
    so a name Slack refuses deployed and every command was then a 400 `unknown_command`. Now CloudFormation refuses
    it at deploy, naming the limit, and the setting refuses it at start."""
    from pydantic import ValidationError

    from kbsearch.config import Settings

    param = cfn["Parameters"]["SlackCommands"]
    pattern = re.compile(param["AllowedPattern"])
    longest = "/" + "k" * 31
    for good in ("/kb", "/kb,/wiki", " /kb , /wiki ", "/вики", longest, f"/kb,{longest}"):
        assert pattern.fullmatch(good), good
        assert Settings(slack_commands=good).slack_command_names
    for bad in ("", "kb", "/", "/k b", "/a/b", "/kb,", longest + "k", f"/kb,{longest}k"):
        assert not pattern.fullmatch(bad), bad
        with pytest.raises(ValidationError):
            Settings(slack_commands=bad)
    assert "32 characters" in param["ConstraintDescription"]
