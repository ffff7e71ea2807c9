"""The shared client's transport (:func:`kbsearch.providers.resilience.shared_client`): httpx's own, with a network
backend that bounds every socket operation by the calling thread's deadline (:func:`~kbsearch.providers.resilience.
bounded`). Apart from :mod:`kbsearch.providers.resilience` so that a process that makes no outbound call (a sync that
changes nothing) never imports httpx and httpcore."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from kbsearch.providers.resilience import Resolver, _clamp, _spawn, system_resolver


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write waits at most until the calling thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, resolve: Resolver = system_resolver) -> None:
        self._inner = inner
        self._resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        options = list(socket_options or ())
        failure: Exception | None = None
        for address in self._addresses(host, port, timeout):  # in the resolver's order, as create_connection does
            try:
                clamped = _clamp(timeout, httpcore.ConnectTimeout)
                stream = self._inner.connect_tcp(address, port, clamped, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream)
        raise failure or httpcore.ConnectError(f"{host} resolved to no address")

    def _addresses(self, host: str, port: int, timeout: float | None) -> list[str]:
        """The host's addresses, resolved on a helper thread waited on no longer than the call's deadline
        (``getaddrinfo`` itself cannot be interrupted: a resolver that hangs keeps only that thread)."""
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        limit = _clamp(timeout, httpcore.ConnectTimeout)
        lookup = _spawn(lambda: self._resolve(host, port), "kbsearch-resolve")
        try:
            infos = lookup.result(timeout=limit)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than the call's deadline") from None
        except (OSError, ValueError) as exc:  # UnicodeError (a ValueError): a label empty or over 63 characters
            raise httpcore.ConnectError(f"cannot resolve {host} ({type(exc).__name__})") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _clamp(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _bound(transport: httpx.BaseTransport, resolve: Resolver) -> None:
    """Put the deadline-aware network backend under ``transport``'s connection pool (httpx takes no
    ``network_backend`` argument; the pool does, a proxy's pool too)."""
    pool: Any = getattr(transport, "_pool", None)
    if pool is not None and not isinstance(pool._network_backend, _DeadlineBackend):
        pool._network_backend = _DeadlineBackend(pool._network_backend, resolve)


def deadline_transport(resolve: Resolver = system_resolver, **kwargs: Any) -> httpx.HTTPTransport:
    """httpx's own transport with the deadline-aware network backend under its connection pool. ``resolve`` looks
    host names up (the system's resolver)."""
    transport = httpx.HTTPTransport(**kwargs)
    _bound(transport, resolve)
    return transport


def deadline_client(client: httpx.Client, resolve: Resolver = system_resolver) -> httpx.Client:
    """``client`` (built with no transport of its own, so that it reads the environment's proxies) with the
    deadline-aware network backend under each of its transports: the direct one and every proxy's."""
    inner: Any = client
    for transport in [inner._transport, *inner._mounts.values()]:
        if transport is not None:
            _bound(transport, resolve)
    return client
