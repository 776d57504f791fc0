"""mitmproxy addon: transient faults between crossdeploy's functions and every endpoint they call.

Run by the soak (tests/src/bin/crossdeploy-soak.rs) with mitmdump in reverse mode in front of
moto, the CodePipeline emulator and the local Lambda service. For a share `fault_rate` of the
requests (never moto's own /moto-api/), one fault of `fault_kinds`, drawn from a generator seeded
with `fault_seed`:

- unavailable: 503, before the request reaches the service (nothing applied);
- internal:    500 in the service's own protocol, before the request reaches it;
- throttle:    throttling in the service's own protocol (awsJson `ThrottlingException`, awsQuery
               `Throttling`, S3 `SlowDown`, Lambda `TooManyRequestsException`), nothing applied;
- reset:       the connection closed before the request is forwarded;
- latency:     the request held `fault_latency_ms` before it is forwarded;
- lost:        the request is forwarded and applied, then its response is dropped (connection
               closed): the client must recognise its own earlier work when it retries.
               Never on PollForJobs, which gets `reset` instead: the jobs a lost PollForJobs
               answer handed out are lost unless CodePipeline hands them out again, which it
               does not document; no worker can recover a job whose id it never saw, and the
               emulator takes the harsh answer (the job times out unacknowledged). Injecting it
               would only measure that, so the soak leaves it out and says so.

Each fault is appended to `fault_log` as one JSON line: {"kind", "service", "op"}.
"""

import asyncio
import json
import random
import re

from mitmproxy import ctx, http

KINDS = ("unavailable", "internal", "throttle", "reset", "latency", "lost")
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


def service_of(flow: http.HTTPFlow) -> str:
    auth = flow.request.headers.get("authorization", "")
    m = SCOPE.search(auth)
    return m.group(1) if m else "unsigned"


def operation_of(flow: http.HTTPFlow, service: str) -> str:
    target = flow.request.headers.get("x-amz-target")
    if target:
        return target.split(".")[-1]
    if service in ("sts", "monitoring"):
        m = re.search(r"Action=([A-Za-z]+)", flow.request.get_text(strict=False) or "")
        if m:
            return m.group(1)
    return f"{flow.request.method} {flow.request.path.split('?')[0][:60]}"


def json_error(status: int, code: str, message: str, version: str = "1.1") -> http.Response:
    body = json.dumps({"__type": code, "message": message})
    return http.Response.make(
        status, body, {"content-type": f"application/x-amz-json-{version}", "x-amzn-errortype": code}
    )


def query_error(status: int, code: str, message: str) -> http.Response:
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>soak</RequestId></ErrorResponse>"
    )
    return http.Response.make(status, body, {"content-type": "text/xml"})


def s3_error(status: int, code: str, message: str) -> http.Response:
    body = f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>soak</RequestId></Error>"
    return http.Response.make(status, body, {"content-type": "application/xml"})


def lambda_error(status: int, code: str, message: str) -> http.Response:
    body = json.dumps({"Type": "Service" if status >= 500 else "User", "message": message})
    return http.Response.make(status, body, {"content-type": "application/json", "x-amzn-errortype": code})


def fault_response(kind: str, service: str) -> http.Response:
    """The answer a service gives for a fault of `kind`, in its own protocol."""
    if service in ("dynamodb", "ecs", "codepipeline"):
        version = "1.0" if service == "dynamodb" else "1.1"
        if kind == "throttle":
            return json_error(400, "ThrottlingException", "Rate exceeded", version)
        if kind == "internal":
            return json_error(500, "InternalFailure", "We encountered an internal error", version)
        return json_error(503, "ServiceUnavailable", "Service unavailable", version)
    if service in ("sts", "monitoring", "iam"):
        if kind == "throttle":
            return query_error(400, "Throttling", "Rate exceeded")
        if kind == "internal":
            return query_error(500, "InternalFailure", "We encountered an internal error")
        return query_error(503, "ServiceUnavailable", "Service unavailable")
    if service == "s3":
        if kind == "throttle":
            return s3_error(503, "SlowDown", "Please reduce your request rate.")
        if kind == "internal":
            return s3_error(500, "InternalError", "We encountered an internal error. Please try again.")
        return s3_error(503, "ServiceUnavailable", "Service unavailable")
    if service == "lambda":
        if kind == "throttle":
            return lambda_error(429, "TooManyRequestsException", "Rate Exceeded.")
        if kind == "internal":
            return lambda_error(500, "ServiceException", "Lambda encountered an internal error")
        return lambda_error(503, "ServiceException", "Service unavailable")
    return http.Response.make(503, "Service unavailable", {"content-type": "text/plain"})


class Faults:
    def __init__(self) -> None:
        self.rng = random.Random(1)
        self.rate = 0.0
        self.kinds = list(KINDS)
        self.log = None

    def load(self, loader) -> None:
        # mitmproxy's options take no floats: the rate is given as text.
        loader.add_option("fault_rate", str, "0", "Share of requests given a fault (0 to 1).")
        loader.add_option("fault_seed", int, 1, "Seed of the fault generator.")
        loader.add_option("fault_kinds", str, ",".join(KINDS), "Comma-separated kinds of fault.")
        loader.add_option("fault_latency_ms", int, 1500, "Delay of a latency fault.")
        loader.add_option("fault_log", str, "", "File to append one JSON line per fault to.")

    def configure(self, updated) -> None:
        if "fault_rate" in updated:
            self.rate = float(ctx.options.fault_rate)
        if "fault_seed" in updated:
            self.rng = random.Random(ctx.options.fault_seed)
        if "fault_kinds" in updated:
            self.kinds = [k for k in ctx.options.fault_kinds.split(",") if k in KINDS] or list(KINDS)
        if "fault_log" in updated and ctx.options.fault_log:
            self.log = open(ctx.options.fault_log, "a", buffering=1)

    def note(self, kind: str, flow: http.HTTPFlow) -> None:
        service = service_of(flow)
        if self.log is not None:
            self.log.write(json.dumps({"kind": kind, "service": service, "op": operation_of(flow, service)}) + "\n")

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.path.startswith("/moto-api"):
            return
        if self.rng.random() >= self.rate:
            return
        kind = self.rng.choice(self.kinds)
        if kind == "lost" and operation_of(flow, service_of(flow)) == "PollForJobs":
            kind = "reset"
        self.note(kind, flow)
        if kind in ("unavailable", "internal", "throttle"):
            flow.response = fault_response(kind, service_of(flow))
        elif kind == "reset":
            flow.kill()
        elif kind == "latency":
            await asyncio.sleep(ctx.options.fault_latency_ms / 1000.0)
        elif kind == "lost":
            flow.metadata["crossdeploy_lose_response"] = True

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get("crossdeploy_lose_response"):
            flow.kill()


addons = [Faults()]
