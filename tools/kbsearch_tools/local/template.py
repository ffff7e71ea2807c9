"""Reading template.yaml the way ``sam local`` does: functions, their handlers, environment and API routes.

Only what the local runner needs is resolved: parameters (defaults, then overrides), conditions, pseudo
parameters and the common intrinsic functions. A ``Ref`` to a resource and a ``GetAtt`` resolve to an empty
string: there is no stack to ask, and a made-up name could send a local run to a real AWS resource; a function's
environment variable built from one is left unset (the function then names it as a missing setting).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kbsearch_tools import TemplateError, read_file, utf8_text, yaml_problem

_PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "kb-search-local",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/kb-search-local/local",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (``!Ref x``) into their long form (``{"Ref": x}``)."""


def _construct(tag: str, node: yaml.Node, loader: _CfnLoader) -> dict[str, Any]:
    name = "Ref" if tag == "Ref" else ("Condition" if tag == "Condition" else f"Fn::{tag}")
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


for _tag in (
    "Ref",
    "Condition",
    "Sub",
    "GetAtt",
    "If",
    "Equals",
    "Join",
    "Select",
    "Split",
    "FindInMap",
    "Not",
    "And",
    "Or",
    "ImportValue",
    "Base64",
    "Cidr",
    "GetAZs",
    "Transform",
    "Length",
    "ToJsonString",
):
    _CfnLoader.add_constructor(
        f"!{_tag}",
        lambda loader, node, t=_tag: _construct(t, node, loader),  # type: ignore[misc]
    )


#: The largest template (and ``--env-vars`` file) read: CloudFormation takes templates of at most 1 MB.
MAX_TEMPLATE_BYTES = 1024 * 1024


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    text = utf8_text(read_file(p, f"template {p}", MAX_TEMPLATE_BYTES, TemplateError), f"template {p}", TemplateError)
    try:
        data = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with CFN tags only
    except yaml.YAMLError as exc:
        raise TemplateError(f"template {p} is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict) or "Resources" not in data:
        raise TemplateError(f"template {p} has no Resources section")
    return data


@dataclass(frozen=True)
class ApiRoute:
    function_id: str
    path: str
    method: str
    api_key_required: bool

    def matches(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when ``method path`` is this route, else None."""
        if self.method not in ("ANY", method.upper()):
            return None
        m = _path_regex(self.path).fullmatch(path)
        return None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}


def _path_regex(template_path: str) -> re.Pattern[str]:
    parts = []
    for segment in template_path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            parts.append(f"(?P<{segment[1:-2]}>.+)")
        elif segment.startswith("{") and segment.endswith("}"):
            parts.append(f"(?P<{segment[1:-1]}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts))


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    code_uri: Path
    handler: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]
    routes: tuple[ApiRoute, ...] = field(default_factory=tuple)

    @property
    def module_file(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rpartition(".")[2]


def unknown_parameter(name: str, known: list[str]) -> str:
    """What ``--parameter-overrides NAME=...`` of a name the template has no parameter of is told: the parameter
    meant (``stage`` is ``Stage``; a setting's name, ``EMBEDDING_DIMENSIONS``, is the parameter that sets it,
    ``EmbeddingDimensions``; a slip, ``EmbedingDimensions``), else every parameter's name. It said only "unknown
    template parameter stage" (walk33), where a misspelt function, option or choice names the one meant."""
    import difflib

    def folded(word: str) -> str:
        return word.replace("_", "").replace("-", "").casefold()

    meant = next((k for k in known if folded(k) == folded(name)), None)
    if meant is None:
        close = difflib.get_close_matches(folded(name), [folded(k) for k in known], n=1, cutoff=0.8)
        meant = next((k for k in known if close and folded(k) == close[0]), None)
    if meant is not None:
        return f"unknown template parameter {name}: did you mean {meant}?"
    return f"unknown template parameter {name} (the template's parameters: {', '.join(known)})"


class Template:
    """A parsed SAM template with its parameters resolved."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        parameter_overrides: dict[str, str] | None = None,
        region: str | None = None,
    ) -> None:
        self.path = Path(path).resolve()
        self.root = self.path.parent
        self.data = load_template(self.path)
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.parameters: dict[str, Any] = {}
        for name, spec in (self.data.get("Parameters") or {}).items():
            default = spec.get("Default")
            self.parameters[name] = None if default is None else str(default)
        for name, value in (parameter_overrides or {}).items():
            if name not in self.parameters:
                raise TemplateError(unknown_parameter(name, list(self.parameters)))
            self.parameters[name] = value
        self._conditions: dict[str, bool] = {}
        self._stack_only = False  # set when a value being resolved names a resource (which exists only deployed)

    # -- intrinsic functions --------------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.data.get("Conditions") or {}).get(name)
            if spec is None:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(spec))
        return self._conditions[name]

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name == "AWS::Region":
            return self.region
        if name in _PSEUDO:
            return _PSEUDO[name]
        if name in self.data["Resources"]:
            self._stack_only = True
            return ""  # no stack here: a resource has no name or ARN locally (like SAM's local runner)
        raise TemplateError(f"Ref to unknown name {name}")

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        resolved = {k: self.resolve(v) for k, v in variables.items()}

        def repl(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in resolved:
                return str(resolved[expr])
            if "." in expr:
                return expr
            return str(self._ref(expr))

        return re.sub(r"\$\{([^}]+)\}", repl, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v) for k, v in value.items()}
        key, arg = next(iter(value.items()))
        if key == "Ref":
            return self._ref(arg)
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::If":
            cond, yes, no = arg
            return self.resolve(yes if self.condition(cond) else no)
        if key == "Fn::Equals":
            a, b = (self.resolve(x) for x in arg)
            return str(a) == str(b)
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(x) for x in arg)
        if key == "Fn::Or":
            return any(self.resolve(x) for x in arg)
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Join":
            sep, items = arg
            return str(sep).join(str(self.resolve(x)) for x in self.resolve(items))
        if key == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if key == "Fn::Split":
            sep, text = arg
            return str(self.resolve(text)).split(sep)
        if key == "Fn::GetAtt":
            self._stack_only = True
            return ""
        return {k: self.resolve(v) for k, v in value.items()}

    # -- functions --------------------------------------------------------------------------------------------
    def _globals(self) -> dict[str, Any]:
        return dict((self.data.get("Globals") or {}).get("Function") or {})

    def function_ids(self) -> list[str]:
        return [
            k
            for k, v in self.data["Resources"].items()
            if isinstance(v, dict) and v.get("Type") == "AWS::Serverless::Function"
        ]

    def function(self, logical_id: str) -> FunctionSpec:
        resource = self.data["Resources"].get(logical_id)
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            known = ", ".join(self.function_ids()) or "none"
            raise TemplateError(f"no function {logical_id!r} in {self.path.name} (functions: {known})")
        props = resource.get("Properties") or {}
        glob = self._globals()
        code_uri = self.resolve(props.get("CodeUri", glob.get("CodeUri")))
        handler = self.resolve(props.get("Handler", glob.get("Handler")))
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"{logical_id}: CodeUri and Handler (module.function) are required")
        env: dict[str, str] = {}
        for source in (glob, props):
            variables = ((source.get("Environment") or {}).get("Variables")) or {}
            for name, raw in variables.items():
                self._stack_only = False
                value = self.resolve(raw)
                if self._stack_only:
                    # built from a resource that exists only in a deployed stack (KB_SOURCE's bucket): left unset,
                    # so the function names the setting instead of using a half-resolved "s3:///"
                    env.pop(name, None)
                elif value is not None:
                    env[name] = str(value)
        name = self.resolve(props.get("FunctionName")) or logical_id
        return FunctionSpec(
            logical_id=logical_id,
            function_name=str(name),
            code_uri=(self.root / code_uri).resolve(),
            handler=handler,
            timeout_s=int(self.resolve(props.get("Timeout", glob.get("Timeout", 3)))),
            memory_mb=int(self.resolve(props.get("MemorySize", glob.get("MemorySize", 128)))),
            environment=env,
            routes=tuple(self._routes(logical_id, props)),
        )

    def _routes(self, logical_id: str, props: dict[str, Any]) -> list[ApiRoute]:
        routes = []
        for event in (props.get("Events") or {}).values():
            if not isinstance(event, dict) or event.get("Type") != "Api":
                continue
            ev = event.get("Properties") or {}
            api_id = (ev.get("RestApiId") or {}).get("Ref") if isinstance(ev.get("RestApiId"), dict) else None
            default_key = self._api_default_key_required(api_id)
            auth = ev.get("Auth") or {}
            required = bool(auth.get("ApiKeyRequired", default_key))
            routes.append(ApiRoute(logical_id, str(ev["Path"]), str(ev["Method"]).upper(), required))
        return routes

    def _api_default_key_required(self, api_id: str | None) -> bool:
        if api_id is None:
            return False
        api = self.data["Resources"].get(api_id) or {}
        auth = (api.get("Properties") or {}).get("Auth") or {}
        return bool(auth.get("ApiKeyRequired", False))

    def api_routes(self) -> list[ApiRoute]:
        routes: list[ApiRoute] = []
        for fid in self.function_ids():
            routes.extend(self.function(fid).routes)
        return routes

    def stage_name(self) -> str:
        for resource in self.data["Resources"].values():
            if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Api":
                return str(self.resolve((resource.get("Properties") or {}).get("StageName", "Prod")))
        return "Prod"
