"""Each Lambda invocation's context (function name, memory, ARN, request id, cold start) in the log lines of that
invocation alone.

Powertools' ``inject_lambda_context`` puts these keys on the logger's formatter, which every thread's lines share,
and leaves them there after the invocation: under ``kbsearch serve``, which runs the functions' handlers and its
syncs (``--watch``, a ``kbsearch index`` handed over) in one process, a sync's ``note skipped`` line carried the
request id of the last search the server had answered (RELIABILITY "Round 29: debts"). Here they are the
invocation's thread's keys (Powertools' ``thread_safe_append_keys``, a context variable), for the invocation only:
a line logged elsewhere, or after, carries none. A thread the invocation starts does not inherit a context variable:
one whose lines belong to the invocation (the index lease's renewer) is started by :func:`context_thread`.
Deployed, one invocation at a time per process, the lines are as before (the renewer's now carry the keys too).
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model

Handler = TypeVar("Handler", bound=Callable[..., Any])


def invocation_context(logger: Logger) -> Callable[[Handler], Handler]:
    """Decorates a Lambda handler as ``logger.inject_lambda_context(clear_state=True)`` did, the keys bound to the
    invocation's thread and removed when it returns. ``cold_start`` is true on the handler's first invocation (each
    function its own container, as under ``kbsearch serve``), never under provisioned concurrency, as Powertools
    says it."""

    def decorate(handler: Handler) -> Handler:
        cold = [os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "provisioned-concurrency"]

        @functools.wraps(handler)
        def run(event: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            keys = {"cold_start": cold[0], **build_lambda_context_model(context).__dict__}
            cold[0] = False
            logger.thread_safe_append_keys(**keys)
            try:
                return handler(event, context, *args, **kwargs)
            finally:
                logger.thread_safe_remove_keys(keys)

        return run  # type: ignore[return-value]

    return decorate


def context_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """A daemon thread (not started) running ``target`` in a copy of this thread's context: its lines carry the
    Lambda context keys of the invocation that starts it, as under ``inject_lambda_context`` (a new thread starts in
    an empty context: the deployed indexer's ``indexer lease ... lost`` line, logged by the renewer, carried no
    request id, before round 29 too; rev29b), and none outside an invocation (a sync under ``kbsearch serve``)."""
    return threading.Thread(target=contextvars.copy_context().run, args=(target,), name=name, daemon=True)
