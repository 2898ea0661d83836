"""`ModelServer` on a Cloud Run service running vLLM's OpenAI server on one L4.

Rollout: `deploy` creates a new revision pinned at 0 % traffic with a tag, whose own URL the
smoke test calls; `promote` moves 100 % to it; `discard` removes the tag and leaves traffic
where it was. Revision names are derived from the model and the template, so a rerun for the
same model finds its revision and sends no update. Nothing needs stopping at the end of a run:
Cloud Run scales the service to zero when idle.
"""

from __future__ import annotations

import concurrent.futures

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2

from core.contracts import DeployFailed, Endpoint
from tasks.backends.gcp.clients import GoogleClients
from tasks.backends.gcp.config import GcpNames, GcpSettings
from tasks.backends.gcp.errors import google_call
from tasks.backends.gcp.iam import add_member_with_etag, add_proto_member, has_proto_member
from tasks.backends.gcp.specs import LABELS, candidate_tag, revision_name, revision_template
from tasks.backends.gcp.store import GcsStore

ENGINE = "vllm"
INVOKER = "roles/run.invoker"
BY_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
READY = "Ready"


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
        self, clients: GoogleClients, names: GcpNames, store: GcsStore, settings: GcpSettings
    ) -> None:
        self.clients = clients
        self.names = names
        self.store = store
        self.settings = settings

    # ------------------------------------------------------------------ protocol

    def deploy(self, model_prefix: str, served_model_name: str, deadline_s: float) -> Endpoint:
        key = model_prefix.rstrip("/").rsplit("/", 1)[-1]
        template = revision_template(
            self.settings,
            self.names,
            self.store.mounted_path(model_prefix),
            served_model_name,
            deadline_s,
        )
        revision = revision_name(self.names.service_id, key, template)
        template.revision = revision
        tag = candidate_tag(key)
        live = self._service()
        if live is None:  # a first revision must take all traffic: there is no other
            self._write(
                self._service_spec(template, [self._target(revision, 100, tag)]), deadline_s
            )
        elif live.template.revision != revision or not self._tagged(live, revision, tag):
            traffic = pinned_traffic(live, revision, tag)
            self._write(self._service_spec(template, traffic, live), deadline_s)
        self._check_ready(revision)
        if not self.settings.allow_unauthenticated:
            self._grant_invoker()
        url = self._tag_url(tag)
        return Endpoint(base_url=url, model=served_model_name, engine=ENGINE, server_id=revision)

    def promote(self, endpoint: Endpoint) -> None:
        live = self._require_service()
        revision = endpoint.server_id
        if [(t.revision, t.percent) for t in live.traffic] == [(revision, 100)]:
            return  # already serving everything (a rerun of the same model)
        self._update_traffic(live, [self._target(revision, 100, self._tag_of(live, revision))])

    def discard(self, endpoint: Endpoint) -> None:
        """Drop the candidate's tag; the split that served before the deploy stays."""
        live = self._require_service()
        revision = endpoint.server_id
        remaining = [t for t in live.traffic if t.revision != revision]
        if len(remaining) == len(live.traffic) or sum(t.percent for t in remaining) != 100:
            return  # nothing tagged, or the candidate is all there is (a brand-new service)
        self._update_traffic(live, remaining)

    def release(self, endpoint: Endpoint) -> None:
        """Nothing to stop: an idle Cloud Run service scales to zero and costs nothing."""

    def how_to_stop(self, endpoint: Endpoint) -> str:
        return (
            f"python -m flows.teardown --backend gcp --gcp-project {self.names.project} "
            f"--gcp-region {self.names.region}   (deletes service {self.names.service_id}; "
            "left alone it scales to zero and costs nothing while idle)"
        )

    def request_headers(self, endpoint: Endpoint) -> dict[str, str]:
        """An identity token for the service (its main URL is the audience of every tag URL)."""
        audience = self._require_service().uri
        with google_call(self.names, "get an identity token for", audience):
            token = self.clients.identity_token(audience)
        return {"Authorization": f"Bearer {token}"}

    # ------------------------------------------------------------------ helpers

    def _service_spec(
        self,
        template: run_v2.RevisionTemplate,
        traffic: list[run_v2.TrafficTarget],
        live: run_v2.Service | None = None,
    ) -> run_v2.Service:
        """The whole desired service; an update carries the live etag (lost races fail)."""
        return run_v2.Service(
            name=self.names.service if live is not None else "",
            labels=LABELS,
            ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
            invoker_iam_disabled=self.settings.allow_unauthenticated,
            template=template,
            traffic=traffic,
            etag=live.etag if live is not None else "",
        )

    @staticmethod
    def _target(revision: str, percent: int, tag: str) -> run_v2.TrafficTarget:
        return run_v2.TrafficTarget(type_=BY_REVISION, revision=revision, percent=percent, tag=tag)

    @staticmethod
    def _tagged(service: run_v2.Service, revision: str, tag: str) -> bool:
        return any(t.revision == revision and t.tag == tag for t in service.traffic)

    @staticmethod
    def _tag_of(service: run_v2.Service, revision: str) -> str:
        return next((t.tag for t in service.traffic if t.revision == revision and t.tag), "")

    def _write(self, service: run_v2.Service, deadline_s: float) -> None:
        """Create or update the service and wait, within the deadline, for it to settle."""
        services = self.clients.services
        action = "update" if service.name else "create"
        with google_call(self.names, action, f"service {self.names.service_id}"):
            if action == "create":
                operation = services.create_service(
                    parent=self.names.location, service=service, service_id=self.names.service_id
                )
            else:
                operation = services.update_service(service=service)
            try:
                operation.result(timeout=deadline_s)
            except concurrent.futures.TimeoutError:
                raise DeployFailed(
                    f"service {self.names.service_id} did not become ready within "
                    f"{deadline_s:.0f} s (raise --startup-timeout); the previous revision keeps "
                    "serving"
                ) from None
            except gexc.GoogleAPICallError as error:
                if isinstance(error, gexc.ServerError | gexc.TooManyRequests):
                    raise
                raise DeployFailed(
                    f"service {self.names.service_id}: the new revision failed to start "
                    f"({error.message}); the previous revision keeps serving"
                ) from None

    def _update_traffic(self, live: run_v2.Service, traffic: list[run_v2.TrafficTarget]) -> None:
        service = run_v2.Service(
            name=self.names.service,
            labels=live.labels,
            ingress=live.ingress,
            invoker_iam_disabled=live.invoker_iam_disabled,
            template=live.template,
            traffic=traffic,
            etag=live.etag,
        )
        with google_call(self.names, "move traffic of", f"service {self.names.service_id}"):
            self.clients.services.update_service(service=service).result(timeout=300)

    def _check_ready(self, revision: str) -> None:
        name = f"{self.names.service}/revisions/{revision}"
        with google_call(self.names, "read", f"revision {revision}"):
            live = self.clients.revisions.get_revision(name=name)
        ready = next((c for c in live.conditions if c.type_ == READY), None)
        if ready is None or ready.state != run_v2.Condition.State.CONDITION_SUCCEEDED:
            detail = ready.message if ready is not None else "no Ready condition"
            raise DeployFailed(
                f"revision {revision} is not ready ({detail}); logs: {live.log_uri}; "
                "the previous revision keeps serving"
            )

    def _grant_invoker(self) -> None:
        """The pipeline's service account may call the service: user credentials impersonate
        it to get an identity token for the smoke test."""
        services = self.clients.services
        resource = self.names.service
        member = f"serviceAccount:{self.names.service_account_email}"
        with google_call(self.names, "grant", f"{INVOKER} on {self.names.service_id}"):
            add_member_with_etag(
                lambda: services.get_iam_policy(
                    request=iam_policy_pb2.GetIamPolicyRequest(resource=resource)
                ),
                lambda policy: has_proto_member(policy, INVOKER, member),
                lambda policy: add_proto_member(policy, INVOKER, member),
                lambda policy: services.set_iam_policy(
                    request=iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy)
                ),
            )

    def _tag_url(self, tag: str) -> str:
        live = self._require_service()
        url = next((s.uri for s in live.traffic_statuses if s.tag == tag and s.uri), None)
        if url is None:
            raise DeployFailed(f"service {self.names.service_id} has no URL for tag {tag} yet")
        return url

    def _service(self) -> run_v2.Service | None:
        with google_call(self.names, "read", f"service {self.names.service_id}"):
            try:
                return self.clients.services.get_service(name=self.names.service)
            except gexc.NotFound:
                return None

    def _require_service(self) -> run_v2.Service:
        live = self._service()
        if live is None:
            raise DeployFailed(f"service {self.names.service_id} does not exist (deploy first)")
        return live
