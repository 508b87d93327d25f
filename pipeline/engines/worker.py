"""What runs inside a Ray or Spark worker around :func:`execute_task`.

Shared by the distributed engines (the local engine calls ``execute_task`` directly):

* **Transient vs. permanent failures.** ``execute_task`` wraps every stage error in
  :class:`TaskFailedError`. A bad shard (not a WARC, a parse error, a missing file) fails the
  same way every time and must not be retried; a throttled or dropped connection to object
  storage usually succeeds a few seconds later. :func:`is_transient` looks through the exception
  chain for the second kind, and :func:`run_task` re-raises those as :class:`TransientTaskError`
  (a ``TaskFailedError`` subclass), which is what the Ray engine lists in ``retry_exceptions``
  and what the Spark engine retries in place.
* **Environment forwarding.** ``BABELSIEVE_*`` variables of the driver (e.g. the fault-injection
  switch ``BABELSIEVE_FAULT``) are set in the worker for the duration of the task: long-lived
  cluster workers were started before this run and do not see the driver's environment.
  Credentials (``AWS_*``) are deliberately *not* forwarded: cluster workers use their own
  (instance role, IRSA, their environment) or the config's ``storage_options``.
"""

from __future__ import annotations

import errno
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from babelsieve.pipeline.core.tasks import TaskFailedError, execute_task
from babelsieve.pipeline.engines.fault_injection import inject_fault

FORWARDED_ENV_PREFIX = "BABELSIEVE_"

# OSError errnos that mean "the service or the network is busy or flaky", not "bad input".
# s3fs maps S3 error codes to these after its own retries: SlowDown/503 -> EBUSY, 500 -> EREMOTEIO.
_TRANSIENT_ERRNOS = {
    errno.EBUSY, getattr(errno, "EREMOTEIO", errno.EIO), errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED,
    errno.ECONNABORTED, errno.EPIPE, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN,
}
# By class name, so that this module imports neither botocore nor aiohttp.
_TRANSIENT_NAMES = {
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ResponseStreamingError", "IncompleteReadError", "ServerDisconnectedError", "ClientConnectionError",
    "ClientConnectorError", "ClientPayloadError", "ClientOSError", "ServerTimeoutError", "FSTimeoutError",
    "IncompleteRead", "RemoteDisconnected", "ProtocolError",
}
_TRANSIENT_S3_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable",
                       "InternalError", "RequestTimeout", "503", "500", "502", "504"}


class TransientTaskError(TaskFailedError):
    """A task failed for a reason that is likely to go away on retry (throttling, network)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend([e.__cause__, e.__context__])  # type: ignore[list-item]


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or anything in its cause/context chain) is a throttle or network error."""
    for e in _chain(exc):
        if isinstance(e, TransientTaskError):
            return True
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
            return False  # bad input or configuration: the same on every attempt
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            return True
        if type(e).__name__ in _TRANSIENT_NAMES:
            return True
        status = getattr(e, "status", None)  # aiohttp.ClientResponseError (https:// inputs)
        if type(e).__name__ == "ClientResponseError" and isinstance(status, int) and (status == 429 or status >= 500):
            return True
        response = getattr(e, "response", None)  # botocore.exceptions.ClientError
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            http = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _TRANSIENT_S3_CODES or http in (429, 500, 502, 503, 504):
                return True
    return False


def forwarded_env() -> dict[str, str]:
    """The driver's variables that workers should see during a task."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}


@contextmanager
def task_env(env: dict[str, str] | None) -> Iterator[None]:
    """Set ``env`` for the duration of one task in a (reused) worker process, then restore."""
    if not env:
        yield
        return
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_task(task_dict: dict[str, Any], config_json: str, env: dict[str, str] | None = None,
             backoff_s: float = 2.0) -> dict[str, Any]:
    """``execute_task`` with the driver's environment; transient failures become TransientTaskError.

    Before raising a transient error it waits ``backoff_s`` (with jitter), so an engine that
    retries at once (Ray) does not hammer a throttling service.
    """
    with task_env(env):
        try:
            return execute_task(task_dict, config_json, before_run=inject_fault)
        except TransientTaskError:
            raise
        except Exception as e:  # noqa: BLE001 - classified, then re-raised
            if not is_transient(e):
                raise
            if backoff_s > 0:
                time.sleep(backoff_s * (0.5 + random.random()))
            raise TransientTaskError(f"transient: {e}") from e


def run_with_retries(task_dict: dict[str, Any], config_json: str, max_retries: int,
                     env: dict[str, str] | None = None, backoff_s: float = 2.0) -> dict[str, Any]:
    """:func:`run_task`, retrying transient failures in place with exponential back-off (jittered,
    at most 60 s) up to ``max_retries`` times; then the last :class:`TransientTaskError` is raised.
    Other failures raise at once: a bad shard fails the same way on every attempt."""
    attempt = 0
    while True:
        try:
            return run_task(task_dict, config_json, env, backoff_s=0)
        except TransientTaskError:
            attempt += 1
            if attempt > max_retries:
                raise
            time.sleep(min(backoff_s * 2 ** (attempt - 1), 60) * (0.5 + random.random()))
