"""`ModelServer` on a Cloud Run service running vLLM's OpenAI server on one L4.

Rollout: `deploy` creates a new revision pinned at 0 % traffic with a tag, whose own URL the
smoke test calls; `promote` moves 100 % to it; `discard` removes the tag and leaves traffic
where it was. Revision names are derived from the model and the template, so a rerun for the
same model finds its revision and sends no update. Nothing needs stopping at the end of a run:
Cloud Run scales the service to zero when idle (unless `gcp.min_instances` keeps one warm,
which `how_to_stop` says).

The first deploy is as safe as later ones: a brand-new service is created private (invoker IAM
check on, whatever `gcp.allow_unauthenticated` says) and labelled `promoted=false`; only
`promote` — after the smoke test passed — applies the service-level settings (public or not,
`gcp.min_instances` kept warm) and sets `promoted=true`. A candidate that fails (not ready, or
failed smoke) on a never-promoted service deletes the service, so nothing that failed stays
reachable. Because `promote` compares the service-level settings too, changing
`gcp.allow_unauthenticated` or `gcp.min_instances` takes effect on the next run even when the
model did not change. Every other write carries the live service-level scaling, since an
update replaces the whole service.
"""

from __future__ import annotations

import concurrent.futures
import time

from google.api_core import exceptions as gexc
from google.api_core.operation import Operation
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2

from core.contracts import DeployFailed, Endpoint
from tasks.backends.gcp.calls import GoogleCalls
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames, GcpSettings
from tasks.backends.gcp.errors import is_transient, summary
from tasks.backends.gcp.iam import add_member_with_etag, add_proto_member, has_proto_member
from tasks.backends.gcp.specs import (
    LABELS,
    PROMOTED_LABEL,
    candidate_tag,
    revision_name,
    revision_template,
    service_scaling,
)
from tasks.backends.gcp.store import GcsStore
from tasks.backends.gcp.teardown import delete_service

ENGINE = "vllm"
INVOKER = "roles/run.invoker"
BY_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
READY = "Ready"
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED
OPERATION_TIMEOUT_S = 300.0


def pinned_traffic(service: run_v2.Service, candidate: str, tag: str) -> list[run_v2.TrafficTarget]:
    """Today's serving split, pinned to revision names, plus the tagged candidate.

    A "latest" target would hand traffic to the new revision the moment it exists, so it is
    rewritten to the revision it points at now; old candidates' 0 % tags are dropped.
    """
    targets = []
    candidate_percent = 0
    for target in service.traffic:
        revision = service.latest_ready_revision if target.type_ == LATEST else target.revision
        revision = revision.rsplit("/", 1)[-1]
        if revision == candidate:
            candidate_percent += target.percent
        elif target.percent > 0:
            targets.append(
                run_v2.TrafficTarget(
                    type_=BY_REVISION, revision=revision, percent=target.percent, tag=target.tag
                )
            )
    targets.append(
        run_v2.TrafficTarget(
            type_=BY_REVISION, revision=candidate, percent=candidate_percent, tag=tag
        )
    )
    return targets


class CloudRunModelServer:
    """Deploys each verified model version as a tagged revision of one service."""

    def __init__(
        self,
        clients: GoogleClients,
        names: GcpNames,
        store: GcsStore,
        settings: GcpSettings,
        calls: GoogleCalls,
    ) -> None:
        self.clients = clients
        self.names = names
        self.store = store
        self.settings = settings
        self.calls = calls

    # ------------------------------------------------------------------ protocol

    def deploy(self, model_prefix: str, served_model_name: str, deadline_s: float) -> Endpoint:
        key = model_prefix.rstrip("/").rsplit("/", 1)[-1]
        template = revision_template(
            self.settings,
            self.names,
            self.store.uri_for(model_prefix),
            served_model_name,
            deadline_s,
        )
        revision = revision_name(self.names.service_id, key, template)
        template.revision = revision
        tag = candidate_tag(key)
        write_error = self.calls.call(
            "deploy",
            f"revision {revision} of service {self.names.service_id}",
            lambda: self._put_candidate(template, revision, tag, deadline_s),
            converge=True,
        )
        self._wait_ready(revision, deadline_s, write_error)
        self._grant_invoker()  # the smoke test calls as the invoker account, public or not
        url = self._tag_url(tag)
        return Endpoint(base_url=url, model=served_model_name, engine=ENGINE, server_id=revision)

    def promote(self, endpoint: Endpoint) -> None:
        """100 % to the candidate, and the service-level settings (public or not, instances
        kept warm) applied."""
        revision = endpoint.server_id
        public = self.settings.allow_unauthenticated
        warm = service_scaling(self.settings)

        def converge() -> None:
            live = self._require_service()
            current = [(t.revision, t.percent) for t in live.traffic]
            if (
                current == [(revision, 100)]
                and live.invoker_iam_disabled == public
                and live.scaling.min_instance_count == warm.min_instance_count
                and live.labels.get(PROMOTED_LABEL) != "false"
            ):
                return  # already so (a rerun of the same model and settings)
            target = self._target(revision, 100, self._tag_of(live, revision))
            self._update(live, [target], invoker_iam_disabled=public, scaling=warm, promoted=True)

        self.calls.call("promote", f"revision {revision}", converge, converge=True)

    def discard(self, endpoint: Endpoint) -> str:
        """Drop the candidate's tag; the split that served before the deploy stays. On a
        service that never had a promoted revision, delete the service instead."""
        revision = endpoint.server_id
        left = self._remove_unpromoted()
        if left is not None:
            return left

        def converge() -> str:
            live = self._require_service()
            remaining = [t for t in live.traffic if t.revision != revision]
            if sum(t.percent for t in remaining) != 100:
                return f"revision {revision} keeps serving: it was live before this run"
            if len(remaining) < len(live.traffic):
                self._update(live, remaining)
            serving = ", ".join(f"{t.revision} {t.percent}%" for t in remaining if t.percent)
            return f"candidate {revision} untagged; still serving: {serving}"

        return self.calls.call("discard", f"revision {revision}", converge, converge=True)

    def release(self, endpoint: Endpoint) -> None:
        """Nothing to stop: an idle Cloud Run service scales to zero and costs nothing."""

    def how_to_stop(self, endpoint: Endpoint) -> str:
        idle = (
            f"gcp.min_instances={self.settings.min_instances} keeps an L4 billing around the clock"
            if self.settings.min_instances
            else "left alone it scales to zero and costs nothing while idle"
        )
        return (
            f"python -m flows.teardown --backend gcp --gcp-project {self.names.project} "
            f"--gcp-region {self.names.region}   (deletes service {self.names.service_id}; {idle})"
        )

    def request_headers(self, endpoint: Endpoint) -> dict[str, str]:
        """An identity token for the service (its main URL is the audience of every tag URL)."""
        audience = self._read_required().uri
        token = self.calls.call(
            "get an identity token for", audience, lambda: self.clients.identity_token(audience)
        )
        return {"Authorization": f"Bearer {token}"}

    # ------------------------------------------------------------------ writing

    def _put_candidate(
        self, template: run_v2.RevisionTemplate, revision: str, tag: str, deadline_s: float
    ) -> str:
        """Create the service (private, unpromoted) or add the tagged candidate at 0 %;
        returns the write operation's error ("" when none), which `_wait_ready` reports."""
        services = self.clients.services
        live = self._service_now()
        if live is None:  # a first revision must take all traffic: there is no other
            service = run_v2.Service(
                labels={**LABELS, PROMOTED_LABEL: "false"},
                ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
                invoker_iam_disabled=False,  # public (if asked) only once smoke passed
                template=template,
                traffic=[self._target(revision, 100, tag)],
            )
            operation = services.create_service(
                parent=self.names.location, service=service, service_id=self.names.service_id
            )
        elif live.template.revision != revision or not self._tagged(live, revision, tag):
            service = run_v2.Service(
                name=self.names.service,
                labels=dict(live.labels),
                ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
                invoker_iam_disabled=live.invoker_iam_disabled,
                scaling=live.scaling,
                template=template,
                traffic=pinned_traffic(live, revision, tag),
                etag=live.etag,
            )
            operation = services.update_service(service=service)
        else:
            return ""
        return self._settle(operation, deadline_s)

    def _settle(self, operation: Operation, deadline_s: float) -> str:
        try:
            operation.result(timeout=deadline_s)
        except concurrent.futures.TimeoutError:
            raise self._failed(
                f"service {self.names.service_id} did not become ready within {deadline_s:.0f} s "
                "(raise --startup-timeout)"
            ) from None
        except gexc.GoogleAPICallError as error:
            if is_transient(error):
                raise
            return summary(str(error.message or error))
        return ""

    def _update(
        self,
        live: run_v2.Service,
        traffic: list[run_v2.TrafficTarget],
        invoker_iam_disabled: bool | None = None,
        scaling: run_v2.ServiceScaling | None = None,
        promoted: bool = False,
    ) -> None:
        """Rewrite the live service with new traffic (and settings), carrying its etag."""
        labels = dict(live.labels)
        if promoted:
            labels[PROMOTED_LABEL] = "true"
        service = run_v2.Service(
            name=self.names.service,
            labels=labels,
            ingress=live.ingress,
            invoker_iam_disabled=(
                live.invoker_iam_disabled if invoker_iam_disabled is None else invoker_iam_disabled
            ),
            scaling=live.scaling if scaling is None else scaling,
            template=live.template,
            traffic=traffic,
            etag=live.etag,
        )
        self.clients.services.update_service(service=service).result(timeout=OPERATION_TIMEOUT_S)

    def _grant_invoker(self) -> None:
        """The invoker account may call the service (and nothing else): the smoke test
        impersonates it. Read first, so only a service this run created gets a write; that
        one write uses the runner's custom role (`grants.SERVICE_IAM_PERMISSIONS`)."""
        services = self.clients.services
        resource = self.names.service
        member = f"serviceAccount:{self.names.invoker_email}"
        edit = add_member_with_etag(
            lambda: services.get_iam_policy(
                request=iam_policy_pb2.GetIamPolicyRequest(resource=resource)
            ),
            lambda policy: has_proto_member(policy, INVOKER, member),
            lambda policy: add_proto_member(policy, INVOKER, member),
            lambda policy: services.set_iam_policy(
                request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy)
            ),
        )
        self.calls.call("grant", f"{INVOKER} on {self.names.service_id}", edit, converge=True)

    # ------------------------------------------------------------------ failing safely

    def _wait_ready(self, revision: str, deadline_s: float, write_error: str) -> None:
        """Until the revision's Ready condition ends; a failed one is reported by name, with
        its condition's message and its logs."""
        name = f"{self.names.service}/revisions/{revision}"
        deadline = time.monotonic() + deadline_s
        while True:
            live = self.calls.call("read", f"revision {revision}", lambda: self._revision(name))
            ready = (
                None
                if live is None
                else next((c for c in live.conditions if c.type_ == READY), None)
            )
            if ready is not None and ready.state == SUCCEEDED:
                return
            if live is None or (ready is not None and ready.state == FAILED) or write_error:
                detail = (ready.message if ready is not None else "") or write_error
                logs = live.log_uri if live is not None else "none"
                raise self._failed(
                    f"revision {revision} failed to become ready ({detail or 'no detail'}); "
                    f"logs: {logs or 'none'}"
                )
            if time.monotonic() > deadline:
                raise self._failed(
                    f"revision {revision} not ready within {deadline_s:.0f} s "
                    f"(raise --startup-timeout); logs: {live.log_uri}"
                )
            time.sleep(self.settings.poll_interval_s)

    def _revision(self, name: str) -> run_v2.Revision | None:
        try:
            return self.clients.revisions.get_revision(name=name)
        except gexc.NotFound:
            return None

    def _failed(self, message: str) -> DeployFailed:
        """A failed candidate, saying what is left serving (deleting a never-promoted service)."""
        left = self._remove_unpromoted()
        return DeployFailed(f"{message}; {left or 'the previous revision keeps serving'}")

    def _remove_unpromoted(self) -> str | None:
        """Delete the service when none of its revisions ever passed a smoke test."""
        live = self._service()
        if live is None:
            return f"service {self.names.service_id} does not exist; nothing serves"
        if live.labels.get(PROMOTED_LABEL) != "false":
            return None
        delete_service(self.clients, self.names, self.calls)
        return (
            f"deleted service {self.names.service_id}: none of its revisions ever passed a "
            "smoke test, so nothing serves"
        )

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _target(revision: str, percent: int, tag: str) -> run_v2.TrafficTarget:
        return run_v2.TrafficTarget(type_=BY_REVISION, revision=revision, percent=percent, tag=tag)

    @staticmethod
    def _tagged(service: run_v2.Service, revision: str, tag: str) -> bool:
        return any(t.revision == revision and t.tag == tag for t in service.traffic)

    @staticmethod
    def _tag_of(service: run_v2.Service, revision: str) -> str:
        return next((t.tag for t in service.traffic if t.revision == revision and t.tag), "")

    def _tag_url(self, tag: str) -> str:
        live = self._read_required()
        url = next((s.uri for s in live.traffic_statuses if s.tag == tag and s.uri), None)
        if url is None:
            raise DeployFailed(f"service {self.names.service_id} has no URL for tag {tag} yet")
        return url

    def _service(self) -> run_v2.Service | None:
        return self.calls.call("read", f"service {self.names.service_id}", self._service_now)

    def _service_now(self) -> run_v2.Service | None:
        try:
            return self.clients.services.get_service(name=self.names.service)
        except gexc.NotFound:
            return None

    def _read_required(self) -> run_v2.Service:
        return self.calls.call("read", f"service {self.names.service_id}", self._require_service)

    def _require_service(self) -> run_v2.Service:
        live = self._service_now()
        if live is None:
            raise DeployFailed(f"service {self.names.service_id} does not exist (deploy first)")
        return live
