"""Connecting to an OpenSearch cluster: settings from flags or the environment, retries with backoff.

Environment (flags win over it):

    OPENSEARCH_HOSTS         comma-separated URLs (default http://localhost:9200)
    OPENSEARCH_USER          basic-auth user      } both or neither; a user:password in a host URL
    OPENSEARCH_PASSWORD      basic-auth password  } works too
    OPENSEARCH_VERIFY_CERTS  1/0, true/false (default true): verify TLS certificates
    OPENSEARCH_CA_CERTS      a CA bundle to verify them with

Credentials never leave this module: `ClusterSettings.describe()` (what reports and errors show)
redacts them, and its repr hides the password.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from common.errors import WorkbenchError

__all__ = ["ClusterSettings", "connect", "with_retries"]

T = TypeVar("T")
DEFAULT_HOST = "http://localhost:9200"
RETRY_STATUS = frozenset({429, 502, 503, 504})  # too many requests, and a node that is not ready


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise WorkbenchError(f"{name}={value!r}: expected true or false")


@dataclass(frozen=True)
class ClusterSettings:
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout_s: float = 60.0
    retries: int = 5  # attempts after the first, on a connection error or a RETRY_STATUS answer
    backoff_s: float = 0.5  # first wait; doubles each retry

    def __post_init__(self) -> None:
        if not self.hosts:
            raise WorkbenchError("OpenSearch: no host given")
        for host in self.hosts:
            if urlsplit(host).scheme not in ("http", "https") or not urlsplit(host).hostname:
                raise WorkbenchError(f"OpenSearch host {_redact(host)!r}: expected http(s)://host:port")
        if (self.user is None) != (self.password is None):
            raise WorkbenchError("OpenSearch: give both a user and a password, or neither")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: Any) -> ClusterSettings:
        """Settings from the environment, overridden by the flags that are not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("OPENSEARCH_HOSTS"):
            values["hosts"] = tuple(h.strip() for h in env["OPENSEARCH_HOSTS"].split(",") if h.strip())
        if env.get("OPENSEARCH_USER") is not None:
            values["user"] = env["OPENSEARCH_USER"]
        if env.get("OPENSEARCH_PASSWORD") is not None:
            values["password"] = env["OPENSEARCH_PASSWORD"]
        if env.get("OPENSEARCH_VERIFY_CERTS"):
            values["verify_certs"] = _flag("OPENSEARCH_VERIFY_CERTS", env["OPENSEARCH_VERIFY_CERTS"])
        if env.get("OPENSEARCH_CA_CERTS"):
            values["ca_certs"] = env["OPENSEARCH_CA_CERTS"]
        values |= {k: (tuple(v) if k == "hosts" else v) for k, v in flags.items() if v is not None}
        return cls(**values)

    def describe(self) -> dict[str, Any]:
        """What may be shown or written: hosts without credentials, whether auth is used."""
        return {
            "hosts": [_redact(h) for h in self.hosts],
            "auth": "basic" if self.user is not None else "none",
            "verify_certs": self.verify_certs,
            "ca_certs": self.ca_certs,
        }


def with_retries(
    call: Callable[[], T], settings: ClusterSettings, what: str, sleep: Callable[[float], None] = time.sleep
) -> T:
    """`call()`, retried with exponential backoff on connection errors and on 429/502/503/504.

    Anything else (a 400, a missing index) is raised at once, as a WorkbenchError naming `what`;
    so is the last failure once the retries are spent.
    """
    from opensearchpy.exceptions import ConnectionError as OSConnectionError
    from opensearchpy.exceptions import TransportError

    delay = settings.backoff_s
    for attempt in range(settings.retries + 1):
        try:
            return call()
        except OSConnectionError as exc:  # ConnectionTimeout and SSLError are ConnectionErrors too
            problem = (
                f"cannot reach OpenSearch at {', '.join(settings.describe()['hosts'])} ({type(exc).__name__})"
            )
            retry = True
        except TransportError as exc:  # args: status, error, info (opensearch-py's layout)
            status = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            error = exc.args[1] if len(exc.args) > 1 else ""
            problem = f"OpenSearch answered {status}: {error} {_reason(exc)}".rstrip()
            retry = status in RETRY_STATUS
        if not retry or attempt == settings.retries:
            tries = f" after {attempt + 1} attempts" if retry else ""
            raise WorkbenchError(f"{what}: {problem}{tries}") from None
        sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def _reason(exc: Any) -> str:
    info = exc.args[2] if len(exc.args) > 2 and isinstance(exc.args[2], dict) else {}
    error = info.get("error")
    reason = error.get("reason") if isinstance(error, dict) else None
    return f"({reason})" if reason else ""


def connect(settings: ClusterSettings, sleep: Callable[[float], None] = time.sleep) -> Any:
    """An opensearch-py client for `settings`, checked by one request (retried as `with_retries`)."""
    from opensearchpy import OpenSearch

    options: dict[str, Any] = {
        "hosts": list(settings.hosts),
        "verify_certs": settings.verify_certs,
        "timeout": settings.timeout_s,
        "max_retries": 0,  # with_retries does the retrying, with backoff
        "ssl_show_warn": settings.verify_certs,
    }
    if settings.user is not None:
        options["http_auth"] = (settings.user, settings.password)
    if settings.ca_certs:
        options["ca_certs"] = settings.ca_certs
    client = OpenSearch(**options)
    with_retries(client.info, settings, "connecting", sleep=sleep)
    return client
