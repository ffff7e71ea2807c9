"""The ``kbsearch`` command: run kb-search's Lambda functions locally, without Docker or AWS."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kbsearch import __version__
from kbsearch.errors import KbSearchError

EXIT_USAGE = 2


def _find_template(given: str | None) -> Path:
    if given:
        return Path(given)
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / "template.yaml"
        if candidate.is_file():
            return candidate
    raise KbSearchError("no template.yaml here or in a parent folder; pass --template PATH")


def _parameter_overrides(items: Sequence[str] | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise KbSearchError(f"--parameter-overrides takes NAME=VALUE, got {item!r}")
        result[name] = value
    return result


def _template_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--template", "-t", help="SAM template (default: template.yaml here or above)")
    p.add_argument("--parameter-overrides", nargs="+", metavar="NAME=VALUE", help="template parameter values")
    p.add_argument("--env-vars", "-n", help='JSON file in SAM\'s format: {"Parameters": {...}, "<Fn>": {...}}')
    p.add_argument(
        "--use-ssm",
        action="store_true",
        help="keep the template's *_PARAM SSM names (reads secrets from AWS); default: plain variables / .env",
    )


def cmd_invoke(args: argparse.Namespace) -> int:
    from kbsearch.local.runtime import LocalFunction, function_environment, read_env_vars_file
    from kbsearch.local.template import Template

    template = Template(_find_template(args.template), _parameter_overrides(args.parameter_overrides))
    spec = template.function(args.function)
    if args.event == "-":
        raw = sys.stdin.read()
    else:
        try:
            raw = Path(args.event).read_text(encoding="utf-8")
        except OSError as exc:
            raise KbSearchError(f"cannot read event file {args.event}: {exc.strerror}") from None
    try:
        event = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise KbSearchError(f"event {args.event} is not valid JSON: {exc}") from None
    env_vars = read_env_vars_file(args.env_vars) if args.env_vars else None
    env = function_environment(spec, template.region, os.environ, env_vars, use_ssm=args.use_ssm)
    out = sys.stdout
    # Function logs go to stderr (as sam local invoke prints them); stdout carries only the result.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            result: Any = LocalFunction(spec, template.region, env).invoke(event)
            status = 0
        except KbSearchError:
            raise
        except Exception as exc:
            logging.getLogger("kbsearch").debug("handler raised", exc_info=True)
            result = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            status = 1
    json.dump(result, out, ensure_ascii=False, indent=2, default=str)
    out.write("\n")
    return status


def cmd_serve(args: argparse.Namespace) -> int:
    from kbsearch.local.runtime import read_env_vars_file
    from kbsearch.local.server import LocalApi, make_server, parse_api_keys
    from kbsearch.local.template import Template

    template = Template(_find_template(args.template), _parameter_overrides(args.parameter_overrides))
    env_vars = read_env_vars_file(args.env_vars) if args.env_vars else None
    api = LocalApi(template, parse_api_keys(os.environ.get("KB_LOCAL_API_KEYS")), env_vars, args.use_ssm)
    for logical_id in sorted({r.function_id for r in api.routes}):
        api.function(logical_id)  # import now: a configuration error stops start-up, not the first request
    server = make_server(api, args.host, args.port)
    port = server.server_address[1]
    base = f"http://{args.host}:{port}"
    print(f"kbsearch serve: {template.path.name} on {base}", flush=True)
    for route in api.routes:
        key = " (API key)" if route.api_key_required and api.api_keys else ""
        print(f"  {route.method:5} {base}{route.path}  → {route.function_id}{key}", flush=True)
    print(f"try: curl -s {base}/health", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kbsearch",
        description="kb-search: serve and invoke the SAM functions locally (no Docker, no AWS needed).",
    )
    parser.add_argument("--version", action="version", version=f"kbsearch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "serve",
        help="serve the template's API routes over HTTP (like sam local start-api)",
        description="Serve the API routes of template.yaml on HTTP, each request turned into an API Gateway "
        "REST proxy event. Set KB_LOCAL_API_KEYS=key1,key2 to require x-api-key where the template does.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=3000, help="port (default 3000; 0 picks a free one)")
    _template_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "invoke",
        help="invoke one function with an event file and print its result (like sam local invoke)",
        description="Invoke a function of template.yaml in this process with a Lambda context and print the "
        "result as JSON on stdout (logs go to stderr).",
    )
    p.add_argument("function", metavar="LogicalId", help="function's logical id, e.g. SearchFunction")
    p.add_argument("--event", "-e", required=True, help="event JSON file ('-' for stdin)")
    _template_args(p)
    p.set_defaults(func=cmd_invoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except KbSearchError as exc:
        print(f"kbsearch {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"kbsearch {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
