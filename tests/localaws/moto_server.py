"""moto's server, with ECS service deployments and atomic DynamoDB writes.

moto (pinned in scripts/requirements.txt) never rolls an ECS service out, and has none of ECS's
service deployment API. crossdeploy follows its deployments through that API, so the local AWS
needs what ECS does after UpdateService: ecs_deployments.py (beside this file) creates service
revisions and service deployments, moves them through their states (rolling, blue/green, canary
and linear; the circuit breaker, deployment alarms, StopServiceDeployment), answers
ListServiceDeployments, DescribeServiceDeployments, StopServiceDeployment and
DescribeServiceRevisions, and keeps DescribeServices' deployments list as ECS does beside them.
Its docstring says what it models and how its time runs.

DynamoDB documents a conditional write as atomic: its condition is checked and the item written
as one step. moto's threaded server checks and writes in separate steps with no lock, so two
concurrent conditional writes of one item can both pass their conditions (the soak found two
deployments holding one target's lease this way). Every DynamoDB item operation here runs under
one lock, which gives moto the atomicity DynamoDB documents, and nothing more.

With CROSSDEPLOY_MOTO_ACCESS_LOG set to a path, every request is logged there as one JSON line
(method, host, path, Range header, the query protocol's Action or the JSON protocol's target,
the kinds of ledger item a DynamoDB request names, the access key id that signed it, when it
arrived and how long moto took to answer it; never a secret), so a test can tell which
principal read which bucket and how many bytes it asked for: the trail S3's server access logs
or CloudTrail data events would give. The benchmark reads it for the calls of each job.

Everything else is moto as released.
"""

import functools
import io
import json
import os
import re
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ecs_deployments  # noqa: E402  (beside this file: ECS service deployments)

ecs_deployments.install()

_dynamodb_lock = threading.RLock()


def _atomic(operation):
    @functools.wraps(operation)
    def locked(*args, **kwargs):
        with _dynamodb_lock:
            return operation(*args, **kwargs)

    return locked


from moto.dynamodb.models import DynamoDBBackend  # noqa: E402

for _name in (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "batch_get_item",
    "transact_get_items",
    "transact_write_items",
):
    if hasattr(DynamoDBBackend, _name):
        setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))

_access_log = os.environ.get("CROSSDEPLOY_MOTO_ACCESS_LOG")
if _access_log:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    _dispatch = DomainDispatcherApplication.__call__
    _access_lock = threading.Lock()
    _signed_by = re.compile(r"Credential=([A-Za-z0-9]+)/")

    def _body(environ, limit):
        """The request's body, up to `limit` bytes (None beyond, or without one), put back for
        moto to read."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not 0 < length <= limit:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        return body

    def _form_action(environ):
        """The Action of a query-protocol request (STS, IAM...), from its form body."""
        if "x-www-form-urlencoded" not in environ.get("CONTENT_TYPE", ""):
            return None
        body = _body(environ, 65536)
        if body is None:
            return None
        found = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action")
        return found[0] if found else None

    _item_kind = re.compile(rb'"pk"\s*:\s*\{\s*"S"\s*:\s*"([A-Z]+)#')

    def _ledger_items(environ):
        """The kinds of ledger item (JOB, LEASE, TARGET...) a DynamoDB request names, from its
        body's keys."""
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return None
        body = _body(environ, 1048576)
        return ([k.decode() for k in _item_kind.findall(body)] or None) if body is not None else None

    def _logged(self, environ, start_response):
        signed = _signed_by.search(environ.get("HTTP_AUTHORIZATION", ""))
        action = _form_action(environ) or environ.get("HTTP_X_AMZ_TARGET")
        items = _ledger_items(environ)
        started = time.time()
        answer = _dispatch(self, environ, start_response)
        line = json.dumps(
            {
                "t_ms": round(started * 1000, 3),
                "took_ms": round((time.time() - started) * 1000, 3),
                "method": environ.get("REQUEST_METHOD"),
                "host": environ.get("HTTP_HOST"),
                "path": environ.get("PATH_INFO"),
                "query": environ.get("QUERY_STRING"),
                "range": environ.get("HTTP_RANGE"),
                "action": action,
                "items": items,
                "key_id": signed.group(1) if signed else None,
            }
        )
        with _access_lock, open(_access_log, "a", encoding="utf-8") as log:
            log.write(line + "\n")
        return answer

    DomainDispatcherApplication.__call__ = _logged

if __name__ == "__main__":
    from moto.server import main

    sys.exit(main())
