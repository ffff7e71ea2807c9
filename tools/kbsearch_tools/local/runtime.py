"""Run a template's Lambda function in this process, the way ``sam local invoke`` runs it in a container.

Environment precedence for every variable the template declares (as in SAM CLI): ``--env-vars`` file (its
``Parameters`` section, then the function's own section) > the shell environment > the template's value.
Locally, the template's ``*_PARAM`` SSM names are dropped unless SSM is asked for, so the plain variables (or a
``.env`` file) supply secrets and nothing calls AWS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from kbsearch_tools import TemplateError, read_file, utf8_text
from kbsearch_tools.local.template import MAX_TEMPLATE_BYTES, FunctionSpec

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: float
    region: str = "us-east-1"
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return time.strftime("%Y/%m/%d/[$LATEST]") + self.aws_request_id.replace("-", "")

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


def json_document(raw: bytes, what: str, error: type[Exception], empty: Any = None) -> Any:
    """A JSON file's bytes (``--event``, ``--env-vars``) → its value; ``error`` with one line saying what is wrong
    (not UTF-8, not JSON, nested deeper than the parser recurses) instead of a traceback. Blank: ``empty``."""
    text = utf8_text(raw, what, error)
    if not text.strip() and empty is not None:
        return empty
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise error(f"{what} is not valid JSON: nested too deep") from None


def read_env_vars_file(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """SAM's ``--env-vars`` JSON: ``{"Parameters": {...}, "<LogicalId>": {...}}``."""
    raw = read_file(path, f"env vars file {path}", MAX_TEMPLATE_BYTES, TemplateError)
    data = json_document(raw, f"env vars file {path}", TemplateError)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise TemplateError(f'env vars file {path} must look like {{"Parameters": {{"NAME": "value"}}}}')
    return {k: {n: "" if v is None else str(v) for n, v in section.items()} for k, section in data.items()}


def function_environment(
    spec: FunctionSpec,
    region: str,
    shell: Mapping[str, str],
    env_vars: Mapping[str, Mapping[str, str]] | None = None,
    use_ssm: bool = False,
) -> dict[str, str]:
    """The variables to set for ``spec``: Lambda's own, then the template's with SAM's precedence."""
    overrides: dict[str, str] = {}
    for section in ("Parameters", spec.logical_id):
        overrides.update((env_vars or {}).get(section, {}))
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_SAM_LOCAL": "true",
        "_HANDLER": spec.handler,
    }
    for name, value in spec.environment.items():
        if name.endswith("_PARAM") and not use_ssm and name not in overrides and name not in shell:
            continue
        env[name] = overrides.get(name, shell.get(name, value))
    for name, value in overrides.items():
        env.setdefault(name, value)
    return env


_load_lock = threading.Lock()


def load_handler(spec: FunctionSpec) -> Handler:
    """Import the function's module (once per process) and return its handler callable."""
    path = spec.module_file
    if not path.is_file():
        raise TemplateError(f"{spec.logical_id}: handler module {path} does not exist")
    module_name = f"_kbsearch_fn_{spec.logical_id}"
    with _load_lock:
        module = sys.modules.get(module_name)
        if module is None:
            module = _import(module_name, path, spec.code_uri)
    handler = getattr(module, spec.handler_name, None)
    if not callable(handler):
        raise TemplateError(f"{spec.logical_id}: {path.name} has no callable {spec.handler_name!r}")
    return handler


def _import(module_name: str, path: Path, code_uri: Path) -> ModuleType:
    if str(code_uri) not in sys.path:
        sys.path.insert(0, str(code_uri))
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise TemplateError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


class LocalFunction:
    """One warm 'container' of a function: environment applied once, module imported once, calls serialised."""

    def __init__(self, spec: FunctionSpec, region: str, environment: Mapping[str, str]) -> None:
        self.spec = spec
        self.region = region
        os.environ.update(environment)
        self._handler = load_handler(spec)
        self._lock = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(
            function_name=self.spec.function_name,
            memory_limit_in_mb=self.spec.memory_mb,
            timeout_s=self.spec.timeout_s,
            region=self.region,
        )
        with self._lock:
            return self._handler(event, context)
