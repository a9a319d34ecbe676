"""Is a service there? One probe-and-explain mechanism for every service the pipeline talks to.

The source database, the MLflow tracking server (or database) and the Redis online store
are each asked once, briefly and without client retries, before the pipeline uses them:
their clients alone would retry a dead server for minutes with nothing but warnings. A
service that does not answer is one ``ServiceUnavailableError`` of one shape::

    <service> at <address> (from <setting>) is unavailable: <reason>

naming the setting to look at, with passwords hidden. Such an error may go away (the
service comes back), so the DAGs retry it; a wrong setting is a ``ConfigurationError``
instead, failed at once.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ctpipe.settings import hide_passwords


class ServiceUnavailableError(RuntimeError):
    """A service the pipeline needs does not answer, or answers that it cannot serve."""

    def __init__(self, service: Service, reason: str):
        self.service = service
        self.reason = reason
        super().__init__(f"{service.name} at {service.address} (from {service.setting}) is unavailable: {reason}")


@dataclass(frozen=True)
class Service:
    """A service as the messages name it."""

    name: str  # "source database", "MLflow tracking server", "Feast online store"
    address: str  # where it is, passwords hidden
    setting: str  # what to change if it is the wrong one: a variable or an Airflow connection
    timeout: float | None = None  # seconds the probe waits, for the message when it runs out
    secrets: tuple[str, ...] = ()  # never shown, whatever the client's message says

    def unavailable(self, why: str | BaseException) -> ServiceUnavailableError:
        reason = why if isinstance(why, str) else explain(why, self.timeout)
        for secret in self.secrets:
            if secret:
                reason = reason.replace(secret, "***")
        return ServiceUnavailableError(self, hide_passwords(reason))

    def probe(self, attempt: Callable[[], str | None], errors: tuple[type[BaseException], ...]) -> None:
        """Run ``attempt`` once: it returns None when the service answered as it should, else why not.

        ``errors`` are the client's errors that mean "not there"; any other error is the caller's.
        """
        try:
            refusal = attempt()
        except errors as error:
            raise self.unavailable(error) from None
        if refusal is not None:
            raise self.unavailable(refusal)

    @contextmanager
    def reaching(self, errors: tuple[type[BaseException], ...], what: str = "stopped answering") -> Iterator[None]:
        """Turn a connection lost while the block talks to the service into the same error."""
        try:
            yield
        except errors as error:
            raise self.unavailable(f"{what}: {explain(error, self.timeout)}") from error


def explain(error: BaseException, timeout: float | None = None) -> str:
    """The cause of a failed connection in a few words, whichever client raised it."""
    dbapi = getattr(sys.modules.get("sqlalchemy.exc"), "DBAPIError", None)
    if dbapi is not None and isinstance(error, dbapi):
        return _driver_reason(str(error.orig or error))
    requests = sys.modules.get("requests")
    redis = sys.modules.get("redis.exceptions")
    timeouts = tuple(
        t
        for t in (
            socket.timeout,
            getattr(requests, "Timeout", None),
            getattr(redis, "TimeoutError", None),
        )
        if t is not None
    )
    if isinstance(error, timeouts):
        return f"no answer within {timeout:g} s" if timeout else "no answer in time"
    if requests is not None and isinstance(error, requests.exceptions.SSLError):
        return f"TLS failed: {_innermost(error)}"
    cause = _innermost(error)
    if isinstance(cause, socket.gaierror):
        host = getattr(error, "request", None) and getattr(error.request, "url", None)  # type: ignore[union-attr]
        where = f" {_host(host)!r}" if host else ""
        return f"host{where} does not resolve ({cause.strerror or cause})"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[:1].lower() + cause.strerror[1:]
    return " ".join(str(cause).split()) or type(cause).__name__


def _driver_reason(text: str) -> str:
    """A database driver's reason, without the parts a message already says (host, port).

    libpq: ``connection to server at "host" (addr), port 5432 failed: FATAL:  database "x" does not exist``.
    """
    import re

    text = text.strip()
    lines = [line for line in text.splitlines() if "failed: " in line] or text.splitlines()[:1] or ["no reason given"]
    reason = lines[-1].rsplit("failed: ", 1)[-1]
    reason = re.sub(r"^(FATAL|ERROR):\s*|\[Errno -?\d+\]\s*", "", reason)
    reason = " ".join(reason.split())
    return reason[:1].lower() + reason[1:] if reason[1:2].islower() else reason


def _innermost(error: BaseException) -> BaseException:
    seen = {id(error)}
    while True:
        inner = error.__cause__ or getattr(error, "reason", None) or next(iter(error.args), None)
        if not isinstance(inner, BaseException) or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url
