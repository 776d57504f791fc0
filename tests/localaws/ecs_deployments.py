"""ECS service deployments for the local AWS: what ECS does after UpdateService, and the API that
shows it (ListServiceDeployments, DescribeServiceDeployments, StopServiceDeployment,
DescribeServiceRevisions), which moto (pinned in scripts/requirements.txt) lacks.

Imported by moto_server.py, which installs it into moto before the server starts.

What it models, from ECS's documentation (service deployments, the deployment circuit breaker,
deployment alarms, blue/green, canary and linear deployments, StopServiceDeployment):

* CreateService, and UpdateService with a new task definition or forceNewDeployment, create a
  service revision and a service deployment (PENDING). A deployment still going on when a newer
  one starts is STOPPED. UpdateService that changes only other settings starts none.
* A deployment goes PENDING -> IN_PROGRESS -> SUCCESSFUL. Rolling: the new tasks start, then it
  succeeds. BLUE_GREEN, CANARY and LINEAR go through the lifecycle stages PRE_SCALE_UP, SCALE_UP,
  POST_SCALE_UP, TEST_TRAFFIC_SHIFT, POST_TEST_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT (all the
  production traffic at once; the canary's share for its bake time, then the rest; or the linear
  step every step bake time), POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME (bakeTimeInMinutes) and
  CLEAN_UP, with the revisions' production traffic weights.
* Tasks of a task definition whose essential container's image tag is `broken` never start (as
  CannotPullContainerError): one fails every step. With the circuit breaker enabled, the
  deployment fails once the failures reach the threshold (half the desired count, at least 3,
  at most 200), and with its rollback it is rolled back (ROLLBACK_REQUESTED ->
  ROLLBACK_IN_PROGRESS -> ROLLBACK_SUCCESSFUL, the service back on the source revision's task
  definition, traffic back on it); without rollback it is STOPPED. Without the breaker it stays
  IN_PROGRESS, failing tasks, as ECS would.
* A service whose desired count is above MOTO_ECS_SERVICE_RUNNING never gets its new tasks
  running: its deployments stay IN_PROGRESS (the soak's rollouts that never complete).
* Deployment alarms (deploymentConfiguration.alarms, enabled): a named alarm in ALARM while the
  deployment is going on fails it: rolled back with `rollback`, else STOPPED. Alarms are read when
  the deployment is read.
* StopServiceDeployment: ROLLBACK on a PENDING or IN_PROGRESS deployment requests its rollback;
  on one stopping or rolling back already it changes nothing; on a finished one it is a
  ConflictException. ABORT stops it where it is (STOP_REQUESTED -> STOPPED).
* UpdateService is refused (InvalidParameterException) for BLUE_GREEN without bakeTimeInMinutes
  (the API reference requires it), for a BLUE_GREEN, CANARY or LINEAR strategy on a service
  without load balancers whose advancedConfiguration names the alternate
  target group, the production listener rule and the role (target groups and rule existing in
  ELB), or Service Connect; for percentages and bake times out of ECS's ranges; and for a
  strategy on a service whose deployment controller is not ECS. The deploymentConfiguration it
  takes replaces the service's whole (fields left out take ECS's defaults): never kinder than an
  ECS that merges.
* DescribeServices shows currentServiceDeployment, the deploymentConfiguration with ECS's
  defaults, the service's events (newest first) and the deployments list as ECS keeps it beside
  service deployments (PRIMARY/ACTIVE with rolloutState).

Time: every step (a stage, a task start, a rollback step) lasts MOTO_ECS_STEP_SECONDS (1 unless
set), and an ECS minute (bake times) lasts MOTO_ECS_SECONDS_PER_MINUTE (60 unless set), so that
tests can follow a bake in seconds. State advances when it is read, by the time passed.
"""

import math
import os
import threading
import time
from datetime import datetime, timezone

from moto.core.exceptions import ServiceException
from moto.ecs import models
from moto.ecs.exceptions import InvalidParameterException
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.moto_api._internal import mock_random

STEP = float(os.environ.get("MOTO_ECS_STEP_SECONDS", "1"))
MINUTE = float(os.environ.get("MOTO_ECS_SECONDS_PER_MINUTE", "60"))

ONGOING = ("PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
FINISHED = ("SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED")
SHIFTING = ("BLUE_GREEN", "CANARY", "LINEAR")

_lock = threading.RLock()
# (account, region) -> {"deployments": {service arn: [Deployment, oldest first]}, "revisions": {arn: dict}}
_stores = {}


class ConflictException(ServiceException):
    code = "ConflictException"


class ServiceDeploymentNotFoundException(ServiceException):
    code = "ServiceDeploymentNotFoundException"


def _store(backend):
    return _stores.setdefault((backend.account_id, backend.region_name), {"deployments": {}, "revisions": {}})


def _at(seconds):
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _seconds(value):
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp()
    return float(value)


def _running_allowed():
    try:
        return max(int(os.environ.get("MOTO_ECS_SERVICE_RUNNING", "0")), 0)
    except ValueError:
        return 0


def _defaults(config):
    """A deploymentConfiguration as ECS shows it: what was given, ECS's defaults for the rest."""
    config = dict(config or {})
    config.setdefault("maximumPercent", 200)
    config.setdefault("minimumHealthyPercent", 100)
    config.setdefault("deploymentCircuitBreaker", {"enable": False, "rollback": False})
    config.setdefault("strategy", "ROLLING")
    if config["strategy"] == "CANARY":
        canary = dict(config.get("canaryConfiguration") or {})
        canary.setdefault("canaryPercent", 5.0)
        canary.setdefault("canaryBakeTimeInMinutes", 10)
        config["canaryConfiguration"] = canary
    if config["strategy"] == "LINEAR":
        linear = dict(config.get("linearConfiguration") or {})
        linear.setdefault("stepPercent", 10.0)
        linear.setdefault("stepBakeTimeInMinutes", 6)
        config["linearConfiguration"] = linear
    return config


def _short(arn):
    return arn.rsplit("/", 1)[-1] if arn else "?"


def _broken(backend, task_definition):
    try:
        td = backend.describe_task_definition(task_definition)
    except Exception:  # noqa: BLE001 - a task definition that cannot be read cannot start either
        return True
    for c in td.container_definitions:
        if c.get("essential", True) and str(c.get("image", "")).endswith(":broken"):
            return True
    return False


def _alarm_states(account, region, names):
    from moto.cloudwatch.models import cloudwatch_backends

    alarms = cloudwatch_backends[account][region].alarms
    return {n: alarms[n].state_value for n in names if n in alarms}


def _event(service, message, at):
    service.events.insert(
        0, {"id": str(mock_random.uuid4()), "createdAt": _at(at), "message": f"(service {service.name}) {message}"}
    )
    del service.events[100:]


class Deployment:
    """One service deployment, advanced by the time passed whenever it is read."""

    def __init__(self, backend, service, source, target, config, now):
        self.backend = backend
        self.service = service
        cluster = service.cluster_name
        self.arn = (
            f"arn:aws:ecs:{backend.region_name}:{backend.account_id}:service-deployment/"
            f"{cluster}/{service.name}/{mock_random.get_random_string(length=22)}"
        )
        self.source = source  # revision dicts (may be empty: the service's first deployment)
        self.target = target
        self.config = _defaults(config)
        self.created = now
        self.started = None
        self.finished = None
        self.stopped = None
        self.updated = now
        self.status = "PENDING"
        self.reason = None
        self.stage = None
        self.plan = self._plan()
        self.phase = 0
        self.phase_at = now
        self.weight = 0.0
        self.failures = 0
        desired = max(service.desired_count, 0)
        self.threshold = max(3, min(200, math.ceil(desired / 2)))
        self.breaker_status = "MONITORING" if self.config["deploymentCircuitBreaker"].get("enable") else "DISABLED"
        alarms = self.config.get("alarms") or {}
        self.alarm_names = list(alarms.get("alarmNames") or []) if alarms.get("enable") else []
        self.alarm_rollback = bool(alarms.get("rollback"))
        self.alarm_status = "MONITORING" if self.alarm_names else "DISABLED"
        self.triggered = []
        self.rollback = None
        self.rollback_at = None
        self.broken = _broken(backend, target["taskDefinition"])
        self.stuck = desired > _running_allowed()

    # -- the plan: (lifecycle stage, seconds, production traffic weight on the target during it)
    def _plan(self):
        strategy = self.config["strategy"]
        if strategy not in SHIFTING:
            return [(None, STEP, 100.0)]
        before = [
            ("PRE_SCALE_UP", STEP, 0.0),
            ("SCALE_UP", STEP, 0.0),
            ("POST_SCALE_UP", STEP, 0.0),
            ("TEST_TRAFFIC_SHIFT", STEP, 0.0),
            ("POST_TEST_TRAFFIC_SHIFT", STEP, 0.0),
        ]
        shift = []
        if strategy == "BLUE_GREEN":
            shift.append(("PRODUCTION_TRAFFIC_SHIFT", STEP, 100.0))
        elif strategy == "CANARY":
            c = self.config["canaryConfiguration"]
            shift.append(("PRODUCTION_TRAFFIC_SHIFT", max(float(c["canaryBakeTimeInMinutes"]) * MINUTE, STEP), float(c["canaryPercent"])))
            shift.append(("PRODUCTION_TRAFFIC_SHIFT", STEP, 100.0))
        else:
            step = float(self.config["linearConfiguration"]["stepPercent"])
            wait = max(float(self.config["linearConfiguration"]["stepBakeTimeInMinutes"]) * MINUTE, STEP)
            weight = step
            while weight < 100.0:
                shift.append(("PRODUCTION_TRAFFIC_SHIFT", wait, round(weight, 1)))
                weight += step
            shift.append(("PRODUCTION_TRAFFIC_SHIFT", STEP, 100.0))
        after = [
            ("POST_PRODUCTION_TRAFFIC_SHIFT", STEP, 100.0),
            ("BAKE_TIME", max(float(self.config.get("bakeTimeInMinutes") or 0) * MINUTE, STEP), 100.0),
            ("CLEAN_UP", STEP, 100.0),
        ]
        return before + shift + after

    def _tasks_start_in(self, stage):
        return stage in (None, "SCALE_UP")

    def advance(self, now):
        while True:
            if self.status == "PENDING":
                if now < self.created + STEP:
                    return
                self.status, self.started = "IN_PROGRESS", self.created + STEP
                self.phase, self.phase_at = 0, self.started
                self.stage = self.plan[0][0]
                self.updated = self.started
                continue
            if self.status == "IN_PROGRESS":
                stage, seconds, weight = self.plan[self.phase]
                # Deployment alarms are watched the whole time it is in progress.
                if self.alarm_names:
                    states = _alarm_states(self.backend.account_id, self.backend.region_name, self.alarm_names)
                    firing = [n for n in self.alarm_names if states.get(n) == "ALARM"]
                    if firing:
                        self.triggered = firing
                        self.alarm_status = "TRIGGERED"
                        reason = f"CloudWatch alarm(s) {', '.join(firing)} in ALARM."
                        _event(self.service, f"deployment {_short(self.arn)} failed: alarm(s) {', '.join(firing)} in ALARM", now)
                        if self.alarm_rollback:
                            self._roll_back(reason, now)
                        else:
                            self._stop("STOPPED", reason, now)
                        continue
                if self._tasks_start_in(stage) and self.broken:
                    failed = int((now - self.phase_at) / STEP) + 1
                    self.failures = max(self.failures, failed)
                    if self.breaker_status != "DISABLED" and self.failures >= self.threshold:
                        self.failures = self.threshold
                        at = self.phase_at + (self.threshold - 1) * STEP
                        self.breaker_status = "TRIGGERED"
                        image = self._image()
                        _event(self.service, f"is unable to consistently start tasks successfully. CannotPullContainerError: {image}: not found", at)
                        reason = "ECS deployment circuit breaker: tasks failed to start."
                        if self.config["deploymentCircuitBreaker"].get("rollback"):
                            self._roll_back(reason, at)
                        else:
                            self._stop("STOPPED", reason, at)
                        continue
                    return
                if self._tasks_start_in(stage) and self.stuck:
                    return
                self.weight = weight
                if now < self.phase_at + seconds:
                    return
                self.phase_at += seconds
                self.phase += 1
                self.updated = self.phase_at
                if self.phase == len(self.plan):
                    self._succeed(self.phase_at)
                    return
                self.stage = self.plan[self.phase][0]
                continue
            if self.status == "ROLLBACK_REQUESTED":
                if now < self.rollback_at + STEP:
                    return
                self.status, self.updated = "ROLLBACK_IN_PROGRESS", self.rollback_at + STEP
                continue
            if self.status == "ROLLBACK_IN_PROGRESS":
                if now < self.rollback_at + 2 * STEP:
                    return
                self._rolled_back(self.rollback_at + 2 * STEP)
                return
            if self.status == "STOP_REQUESTED":
                if now < self.stopped + STEP:
                    return
                self.status, self.finished, self.updated = "STOPPED", self.stopped + STEP, self.stopped + STEP
                return
            return

    def _image(self):
        try:
            td = self.backend.describe_task_definition(self.target["taskDefinition"])
            return next((c.get("image") for c in td.container_definitions if str(c.get("image", "")).endswith(":broken")), "image")
        except Exception:  # noqa: BLE001
            return "image"

    def _roll_back(self, reason, at):
        self.status, self.reason, self.rollback_at, self.updated = "ROLLBACK_REQUESTED", reason, at, at
        back_to = self.source[0]["serviceRevisionArn"] if self.source else None
        self.rollback = {"reason": reason, "startedAt": _at(at), "serviceRevisionArn": back_to}
        if back_to:
            _event(self.service, f"deployment {_short(self.arn)} is rolling back to service revision {_short(back_to)}: {reason}", at)

    def _stop(self, status, reason, at):
        self.status, self.reason, self.updated = status, reason, at
        self.stopped = at
        if status == "STOPPED":
            self.finished = at
            self._legacy("FAILED", reason)

    def _succeed(self, at):
        self.status, self.finished, self.updated, self.stage = "SUCCESSFUL", at, at, None
        self.weight = 100.0
        self.reason = None
        _event(self.service, "has reached a steady state.", at)
        self._legacy("COMPLETED", f"ECS deployment {self.legacy_id} completed.")

    def _rolled_back(self, at):
        self.status, self.finished, self.updated, self.stage = "ROLLBACK_SUCCESSFUL", at, at, None
        self.weight = 0.0
        if not self.source:
            self.status = "ROLLBACK_FAILED"
            self.reason = f"{self.reason} There is no service revision to roll back to."
            self._legacy("FAILED", self.reason)
            return
        if self.source:
            back = self.source[0]
            self.service.task_definition = back["taskDefinition"]
            old = dict(self.legacy, id=f"ecs-svc/{mock_random.randint(0, 32**12)}", status="PRIMARY",
                       taskDefinition=back["taskDefinition"], rolloutState="COMPLETED",
                       rolloutStateReason="ECS deployment rolled back.", createdAt=_at(at), updatedAt=_at(at))
            self.service.deployments = [old]
            _event(self.service, f"rolled back to service revision {_short(back['serviceRevisionArn'])}.", at)

    # -- the deployments list ECS keeps beside service deployments
    def start_legacy(self, now):
        previous = self.service.deployments[0] if self.service.deployments else {}
        self.legacy_id = f"ecs-svc/{mock_random.randint(0, 32**12)}"
        self.legacy = dict(
            previous,
            id=self.legacy_id,
            status="PRIMARY",
            taskDefinition=self.target["taskDefinition"],
            desiredCount=self.service.desired_count,
            createdAt=_at(now),
            updatedAt=_at(now),
            rolloutState="IN_PROGRESS",
            rolloutStateReason=f"ECS deployment {self.legacy_id} in progress.",
            failedTasks=0,
        )
        rest = [dict(d, status="ACTIVE") for d in self.service.deployments[:1]] if self.source else []
        self.service.deployments = [self.legacy] + rest

    def _legacy(self, state, reason):
        self.legacy.update(rolloutState=state, rolloutStateReason=reason, failedTasks=self.failures,
                           updatedAt=_at(self.updated))
        if state == "COMPLETED":
            self.service.deployments = [self.legacy]

    # -- what the API shows
    def _revision(self, rev, weight):
        desired = self.service.desired_count
        running = 0 if (self.broken or self.stuck) and rev is self.target else desired
        out = {
            "arn": rev["serviceRevisionArn"],
            "requestedTaskCount": desired,
            "runningTaskCount": running,
            "pendingTaskCount": desired - running,
        }
        if self.config["strategy"] in SHIFTING:
            out["requestedProductionTrafficWeight"] = weight
            out["requestedTestTrafficWeight"] = 100.0 if rev is self.target else 0.0
        return out

    def brief(self):
        out = {
            "serviceDeploymentArn": self.arn,
            "serviceArn": self.service.arn,
            "clusterArn": self.service.cluster_arn,
            "createdAt": _at(self.created),
            "targetServiceRevisionArn": self.target["serviceRevisionArn"],
            "status": self.status,
        }
        if self.started:
            out["startedAt"] = _at(self.started)
        if self.finished:
            out["finishedAt"] = _at(self.finished)
        if self.reason:
            out["statusReason"] = self.reason
        return out

    def full(self):
        out = self.brief()
        del out["targetServiceRevisionArn"]
        out["updatedAt"] = _at(self.updated)
        if self.stopped:
            out["stoppedAt"] = _at(self.stopped)
        out["sourceServiceRevisions"] = [self._revision(r, 100.0 - self.weight) for r in self.source]
        out["targetServiceRevision"] = self._revision(self.target, self.weight)
        if self.stage and self.status == "IN_PROGRESS":
            out["lifecycleStage"] = self.stage
        out["deploymentConfiguration"] = self.config
        out["deploymentCircuitBreaker"] = {
            "status": self.breaker_status,
            "failureCount": self.failures,
            "threshold": self.threshold,
        }
        out["alarms"] = {
            "status": self.alarm_status,
            "alarmNames": self.alarm_names,
            "triggeredAlarmNames": self.triggered,
        }
        if self.rollback:
            out["rollback"] = {k: v for k, v in self.rollback.items() if v is not None}
        return out


def _revision(backend, service, now):
    arn = (
        f"arn:aws:ecs:{backend.region_name}:{backend.account_id}:service-revision/"
        f"{service.cluster_name}/{service.name}/{mock_random.randint(10**18, 10**19 - 1)}"
    )
    rev = {
        "serviceRevisionArn": arn,
        "serviceArn": service.arn,
        "clusterArn": service.cluster_arn,
        "taskDefinition": service.task_definition,
        "launchType": service.launch_type,
        "loadBalancers": service.load_balancers or [],
        "createdAt": _at(now),
    }
    _store(backend)["revisions"][arn] = rev
    return rev


def _deployments(backend, service):
    return _store(backend)["deployments"].setdefault(service.arn, [])


def advance(backend, service, now=None):
    now = time.time() if now is None else now
    for d in _deployments(backend, service):
        if d.status in ONGOING:
            d.advance(now)


def _start(backend, service, now):
    deployments = _deployments(backend, service)
    for d in deployments:
        d.advance(now)
    succeeded = [d for d in deployments if d.status == "SUCCESSFUL"]
    source = [succeeded[-1].target] if succeeded else []
    for d in deployments:
        if d.status in ONGOING:
            d._stop("STOPPED", "Amazon ECS stopped this service deployment because a newer one started.", now)
            if d.target not in source and d.status != "ROLLBACK_SUCCESSFUL":
                source.append(d.target)
    target = _revision(backend, service, now)
    deployment = Deployment(backend, service, source, target, getattr(service, "deployment_configuration", None), now)
    deployment.start_legacy(now)
    deployments.append(deployment)
    service.current_service_deployment = deployment.arn
    _event(service, f"has started a service deployment {_short(deployment.arn)} of {service.task_definition}.", now)
    return deployment


def _check_strategy(backend, service, config, controller):
    """InvalidParameterException for what ECS refuses in a deploymentConfiguration."""
    if not config:
        return
    strategy = config.get("strategy", "ROLLING")
    if strategy not in ("ROLLING",) + SHIFTING:
        raise InvalidParameterException(f"Invalid deployment strategy: {strategy}")
    bake = config.get("bakeTimeInMinutes")
    if bake is not None and not 0 <= int(bake) <= 1440:
        raise InvalidParameterException("bakeTimeInMinutes must be between 0 and 1440.")
    canary = config.get("canaryConfiguration")
    if canary:
        p, m = canary.get("canaryPercent"), canary.get("canaryBakeTimeInMinutes")
        if p is not None and not (0.1 <= float(p) <= 100.0):
            raise InvalidParameterException("canaryPercent must be between 0.1 and 100.0.")
        if m is not None and not 0 <= int(m) <= 1440:
            raise InvalidParameterException("canaryBakeTimeInMinutes must be between 0 and 1440.")
    linear = config.get("linearConfiguration")
    if linear:
        p, m = linear.get("stepPercent"), linear.get("stepBakeTimeInMinutes")
        if p is not None and not (3.0 <= float(p) <= 100.0):
            raise InvalidParameterException("stepPercent must be between 3.0 and 100.0.")
        if m is not None and not 0 <= int(m) <= 1440:
            raise InvalidParameterException("stepBakeTimeInMinutes must be between 0 and 1440.")
    if strategy == "ROLLING":
        return
    # "You must provide this parameter when you use the BLUE_GREEN deployment strategy."
    if strategy == "BLUE_GREEN" and bake is None:
        raise InvalidParameterException("bakeTimeInMinutes is required with the BLUE_GREEN deployment strategy.")
    if (controller or {}).get("type", "ECS") != "ECS":
        raise InvalidParameterException(f"The {strategy} deployment strategy requires the ECS deployment controller.")
    if getattr(service, "service_connect_enabled", False):
        return
    balancers = service.load_balancers or []
    if not balancers:
        raise InvalidParameterException(
            f"The {strategy} deployment strategy requires a load balancer with advancedConfiguration, or Service Connect."
        )
    from moto.elbv2.models import elbv2_backends

    elb = elbv2_backends[backend.account_id][backend.region_name]
    for lb in balancers:
        advanced = lb.get("advancedConfiguration") or {}
        for key in ("alternateTargetGroupArn", "productionListenerRule", "roleArn"):
            if not advanced.get(key):
                raise InvalidParameterException(
                    f"The {strategy} deployment strategy requires advancedConfiguration.{key} for target group {lb.get('targetGroupArn')}."
                )
        for tg in (lb.get("targetGroupArn"), advanced["alternateTargetGroupArn"]):
            if tg not in elb.target_groups:
                raise InvalidParameterException(f"Target group {tg} does not exist.")
        rule = advanced["productionListenerRule"]
        listeners = [listener for lb_ in elb.load_balancers.values() for listener in lb_.listeners.values()]
        known = {listener.arn for listener in listeners} | {r.arn for listener in listeners for r in listener.rules.values()}
        if rule not in known:
            raise InvalidParameterException(f"Listener rule {rule} does not exist.")


def _find(backend, arn):
    for d in _deployments_all(backend):
        if d.arn == arn:
            return d
    return None


def _deployments_all(backend):
    return [d for ds in _store(backend)["deployments"].values() for d in ds]


# ---- moto, extended -------------------------------------------------------------------------

_create_service = EC2ContainerServiceResponse.create_service
_update_service = EC2ContainerServiceResponse.update_service
_describe_services = models.EC2ContainerServiceBackend.describe_services
_delete_service = models.EC2ContainerServiceBackend.delete_service


def create_service(self):
    config = self._get_param("deploymentConfiguration")
    connect = self._get_param("serviceConnectConfiguration")
    with _lock:
        result = _create_service(self)
        service = self.ecs_backend._get_service(self._get_param("cluster", "default"), self._get_param("serviceName"))
        service.deployment_configuration = _defaults(config)
        service.service_connect_enabled = bool((connect or {}).get("enabled"))
        try:
            _check_strategy(self.ecs_backend, service, config, service.deployment_controller)
        except InvalidParameterException:
            self.ecs_backend.services.pop(f"{service.cluster_name}:{service.name}", None)
            raise
        if service.deployment_controller.get("type", "ECS") == "ECS" and service.task_definition:
            _store(self.ecs_backend)["deployments"].pop(service.arn, None)
            _start(self.ecs_backend, service, time.time())
        return result


def update_service(self):
    backend = self.ecs_backend
    cluster = self._get_param("cluster", "default")
    name = str(self._get_param("service", "")).split("/")[-1]
    config = self._get_param("deploymentConfiguration")
    connect = self._get_param("serviceConnectConfiguration")
    asked_for = self._get_param("taskDefinition")
    force = self._get_param("forceNewDeployment")
    with _lock:
        service = backend._get_service(cluster, name)
        now = time.time()
        advance(backend, service, now)
        if connect is not None:
            service.service_connect_enabled = bool(connect.get("enabled"))
        if config is not None:
            _check_strategy(backend, service, config, service.deployment_controller)
        before = service.task_definition
        result = _update_service(self)
        if config is not None:
            service.deployment_configuration = _defaults(config)
        arn = backend.describe_task_definition(asked_for).arn if asked_for else None
        if arn:
            service.task_definition = arn
        if (arn and arn != before) or force:
            _start(backend, service, now)
        return result


def describe_services(self, cluster_str, service_names_or_arns):
    with _lock:
        found, failures = _describe_services(self, cluster_str, service_names_or_arns)
        now = time.time()
        for service in found:
            advance(self, service, now)
            service.deployment_configuration = _defaults(getattr(service, "deployment_configuration", None))
        return found, failures


def delete_service(self, cluster_name, service_name, force):
    with _lock:
        service = _delete_service(self, cluster_name, service_name, force)
        _store(self)["deployments"].pop(service.arn, None)
        return service


def list_service_deployments(self):
    backend = self.ecs_backend
    cluster = self._get_param("cluster", "default")
    name = self._get_param("service")
    if not name:
        raise InvalidParameterException("service is required.")
    statuses = self._get_param("status") or []
    created = self._get_param("createdAt") or {}
    limit = self._get_param("maxResults") or 20
    if not 1 <= int(limit) <= 100:
        raise InvalidParameterException("maxResults must be between 1 and 100.")
    with _lock:
        service = backend._get_service(cluster, str(name).split("/")[-1])
        now = time.time()
        advance(backend, service, now)
        after, before = _seconds(created.get("after")), _seconds(created.get("before"))
        found = [
            d
            for d in reversed(_deployments(backend, service))
            if (not statuses or d.status in statuses)
            and (after is None or d.created >= after)
            and (before is None or d.created <= before)
        ]
        start = int(self._get_param("nextToken") or 0)
        page = found[start : start + int(limit)]
        out = {"serviceDeployments": [d.brief() for d in page]}
        if start + int(limit) < len(found):
            out["nextToken"] = str(start + int(limit))
        return _result(out)


def describe_service_deployments(self):
    backend = self.ecs_backend
    arns = self._get_param("serviceDeploymentArns") or []
    if not 1 <= len(arns) <= 20:
        raise InvalidParameterException("serviceDeploymentArns must name 1 to 20 service deployments.")
    with _lock:
        now = time.time()
        found, failures = [], []
        for arn in arns:
            d = _find(backend, arn)
            if d is None:
                failures.append({"arn": arn, "reason": "MISSING"})
                continue
            d.advance(now)
            found.append(d.full())
        return _result({"serviceDeployments": found, "failures": failures})


def stop_service_deployment(self):
    backend = self.ecs_backend
    arn = self._get_param("serviceDeploymentArn")
    stop_type = self._get_param("stopType") or "ROLLBACK"
    if stop_type not in ("ROLLBACK", "ABORT"):
        raise InvalidParameterException(f"Invalid stopType: {stop_type}")
    with _lock:
        d = _find(backend, arn)
        if d is None:
            raise ServiceDeploymentNotFoundException(f"The service deployment {arn} does not exist.")
        now = time.time()
        d.advance(now)
        if d.status in FINISHED:
            raise ConflictException(f"The service deployment is {d.status} and cannot be stopped.")
        if d.status in ("PENDING", "IN_PROGRESS"):
            if stop_type == "ROLLBACK":
                if not d.source:
                    raise InvalidParameterException("The service deployment has no service revision to roll back to.")
                d._roll_back("Service deployment rolled back because of a StopServiceDeployment request.", now)
            else:
                d.status, d.stopped, d.updated = "STOP_REQUESTED", now, now
                d.reason = "Service deployment stopped because of a StopServiceDeployment request."
        return _result({"serviceDeploymentArn": d.arn})


def describe_service_revisions(self):
    backend = self.ecs_backend
    arns = self._get_param("serviceRevisionArns") or []
    if not 1 <= len(arns) <= 20:
        raise InvalidParameterException("serviceRevisionArns must name 1 to 20 service revisions.")
    with _lock:
        revisions = _store(backend)["revisions"]
        found = [revisions[a] for a in arns if a in revisions]
        failures = [{"arn": a, "reason": "MISSING"} for a in arns if a not in revisions]
        return _result({"serviceRevisions": found, "failures": failures})


def _result(body):
    from moto.core.responses import ActionResult

    return ActionResult(body)


def install():
    EC2ContainerServiceResponse.create_service = create_service
    EC2ContainerServiceResponse.update_service = update_service
    EC2ContainerServiceResponse.list_service_deployments = list_service_deployments
    EC2ContainerServiceResponse.describe_service_deployments = describe_service_deployments
    EC2ContainerServiceResponse.stop_service_deployment = stop_service_deployment
    EC2ContainerServiceResponse.describe_service_revisions = describe_service_revisions
    models.EC2ContainerServiceBackend.describe_services = describe_services
    models.EC2ContainerServiceBackend.delete_service = delete_service
