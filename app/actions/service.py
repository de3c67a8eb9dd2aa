"""Confirm-before-execute: every rule about running a catalog webhook lives here.

A run is prepared (a record with what will be sent and a single-use token, stored hashed), then
confirmed by the same person before it expires. The confirmation claims the record with a
compare-and-set and commits `running` before the request goes out, so two confirmations send it
once and a crash leaves a record that says so instead of a silent retry.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Float, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app import clock, outbound
from app.actions import executor
from app.actions.catalog import ENV_REF, ActionSpec, Catalog
from app.actions.models import FINISHED_STATES, ActionRun
from app.auth.models import User
from app.errors import Conflict, Gone, InvalidInput, NotFound, NotPermitted
from app.incidents import service as incidents
from app.incidents.models import Incident, RoleAssignment
from app.masking import MASK, masked_headers
from app.observability import ACTION_RUNS

# A run still `running` this long after its timeout was abandoned by a process that died (or lost
# its database): it is shown as `unknown`, never re-sent by itself.
STALE_GRACE = timedelta(seconds=30)
SHOWN_STATES = ("awaiting_confirmation", "expired", "running", "unknown", *FINISHED_STATES)
STATE_LABELS = {
    "awaiting_confirmation": "Awaiting confirmation",
    "expired": "Expired (never sent)",
    "running": "Running",
    "unknown": "Unknown (sent, no result recorded)",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timed_out": "Timed out",
}


@dataclass(frozen=True)
class RunView:
    """A run as people see it: its record, its catalog entry and its state at this moment."""

    run: ActionRun
    spec: ActionSpec | None
    state: str

    @property
    def preview(self) -> dict[str, object]:
        """What is (or was) sent, secrets masked."""
        masked = masked_headers(self.run.request_headers)
        headers = {name: ENV_REF.sub(MASK, value) for name, value in masked.items()}
        headers[executor.RUN_ID_HEADER] = str(self.run.id)
        headers[executor.SIGNATURE_HEADER] = "sha256=" + MASK + " (HMAC-SHA256 of the body)"
        run = self.run
        return {"method": run.method, "url": run.url, "headers": headers, "body": run.request_body}


def shown_state(run: ActionRun, now: datetime) -> str:
    """The stored state, or `expired` / `unknown` when time has decided it."""
    if run.state == "awaiting_confirmation" and run.expires_at <= now:
        return "expired"
    if (
        run.state == "running"
        and run.started_at is not None
        and run.started_at + timedelta(milliseconds=run.timeout_ms) + STALE_GRACE < now
    ):
        return "unknown"
    return run.state


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _spec(catalog: Catalog, name: str) -> ActionSpec:
    spec = catalog.get(name)
    if spec is None:
        raise NotFound(f"No action {name!r} in the catalog: actions are {', '.join(catalog.actions)}.")
    return spec


async def _check_may_run(session: AsyncSession, *, actor: User, spec: ActionSpec, incident: Incident) -> None:
    incidents.require_responder(actor)
    if actor.role not in spec.roles:
        raise NotPermitted(f"{spec.title} can be run by {' or '.join(spec.roles)} users only.")
    if incident.resolved_at is not None:
        raise Conflict(f"{incident.ref} is resolved: reopen it before running actions on it.")
    if spec.incident_roles:
        held = await session.scalars(
            select(RoleAssignment.role).where(
                RoleAssignment.incident_id == incident.id,
                RoleAssignment.user_id == actor.id,
                RoleAssignment.ended_at.is_(None),
            )
        )
        if not set(held) & set(spec.incident_roles):
            labels = " or ".join(incidents.ROLE_LABELS[r] for r in spec.incident_roles)
            raise NotPermitted(f"{spec.title} can be run only by the {labels} of {incident.ref}.")


async def _check_cooldown(
    session: AsyncSession, *, spec: ActionSpec, incident: Incident, now: datetime
) -> None:
    if spec.cooldown is None:
        return
    last = await session.scalar(
        select(func.max(ActionRun.started_at)).where(
            ActionRun.incident_id == incident.id,
            ActionRun.action == spec.name,
            ActionRun.started_at > now - spec.cooldown,
        )
    )
    if last is not None:
        again = last + spec.cooldown
        raise Conflict(
            f"{spec.title} already ran on {incident.ref} at {last:%H:%M:%S} UTC; its cooldown is "
            f"{_span(spec.cooldown)}. It can run again from {again:%H:%M:%S} UTC."
        )


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


async def _incident(session: AsyncSession, ref: str) -> Incident:
    incident = await session.scalar(select(Incident).where(Incident.ref == ref))
    if incident is None:
        raise NotFound(f"No incident {ref}.")
    return incident


# ---------------------------------------------------------------- reads


async def runnable_actions(
    session: AsyncSession, *, catalog: Catalog, actor: User, incident: Incident
) -> list[ActionSpec]:
    """The catalog actions this person may run on this incident now (cooldowns aside)."""
    allowed = []
    for spec in catalog.actions.values():
        try:
            await _check_may_run(session, actor=actor, spec=spec, incident=incident)
        except (NotPermitted, Conflict):
            continue
        allowed.append(spec)
    return allowed


def _view(catalog: Catalog, run: ActionRun, now: datetime) -> RunView:
    return RunView(run=run, spec=catalog.get(run.action), state=shown_state(run, now))


async def get_action_run(session: AsyncSession, *, catalog: Catalog, run_id: int) -> RunView:
    """One run with its incident and who prepared it, or NotFound."""
    run = await session.scalar(
        select(ActionRun)
        .where(ActionRun.id == run_id)
        .options(selectinload(ActionRun.incident), selectinload(ActionRun.prepared_by))
        .execution_options(populate_existing=True)
    )
    if run is None:
        raise NotFound(f"No action run {run_id}.")
    return _view(catalog, run, clock.now())


async def list_action_runs(
    session: AsyncSession,
    *,
    catalog: Catalog,
    ref: str | None = None,
    incident_id: int | None = None,
    action: str | None = None,
    state: str | None = None,
    limit: int = 200,
) -> list[RunView]:
    """Runs newest first, filtered by incident (its reference or id), action and (shown) state."""
    now = clock.now()
    query = select(ActionRun).options(selectinload(ActionRun.incident), selectinload(ActionRun.prepared_by))
    if ref:
        incident_id = (await _incident(session, ref.strip())).id
    if incident_id is not None:
        query = query.where(ActionRun.incident_id == incident_id)
    if action:
        query = query.where(ActionRun.action == action.strip()[:64])
    if state:
        if state not in SHOWN_STATES:
            choices = ", ".join(SHOWN_STATES)
            raise InvalidInput(f"Unknown state {state!r}: choose one of {choices}.", field="state")
        stale_after = ActionRun.started_at + func.make_interval(
            0, 0, 0, 0, 0, 0, cast(ActionRun.timeout_ms, Float) / 1000 + STALE_GRACE.total_seconds()
        )
        stored = {"expired": "awaiting_confirmation", "unknown": "running"}.get(state, state)
        query = query.where(ActionRun.state == stored)
        if state == "expired":
            query = query.where(ActionRun.expires_at <= now)
        elif state == "awaiting_confirmation":
            query = query.where(ActionRun.expires_at > now)
        elif state == "unknown":
            query = query.where(stale_after < now)
        elif state == "running":
            query = query.where(stale_after >= now)
    runs = await session.scalars(query.order_by(ActionRun.id.desc()).limit(limit))
    return [_view(catalog, run, now) for run in runs]


# ---------------------------------------------------------------- writes


async def prepare_action_run(
    session: AsyncSession, *, catalog: Catalog, actor: User, ref: str, name: str
) -> tuple[RunView, str]:
    """Record what would be sent and return it with a single-use confirmation token (shown once)."""
    incidents.require_responder(actor)
    spec = _spec(catalog, name)
    incident = await _incident(session, ref)
    await _check_may_run(session, actor=actor, spec=spec, incident=incident)
    _scheme, host, port = outbound.destination(spec.url)
    if not outbound.host_allowed(catalog, host, port):
        raise Conflict(f"{spec.title} points at {host}:{port}, which is not on the actions allowlist.")
    now = clock.now()
    await _check_cooldown(session, spec=spec, incident=incident, now=now)
    headers, body = executor.render_request(spec, incident, actor)
    token = secrets.token_urlsafe(32)
    run = ActionRun(
        incident_id=incident.id,
        action=spec.name,
        state="awaiting_confirmation",
        prepared_by_id=actor.id,
        prepared_at=now,
        expires_at=now + catalog.confirm_within,
        confirm_token_hash=_hash(token),
        method=spec.method,
        url=spec.url,
        request_headers=headers,
        request_body=body,
        timeout_ms=int(spec.timeout.total_seconds() * 1000),
    )
    session.add(run)
    await session.commit()
    return await get_action_run(session, catalog=catalog, run_id=run.id), token


ALREADY_CONFIRMED = "This run was already confirmed: a confirmation works once. Prepare the action again."


async def _confirmable_run(
    session: AsyncSession, *, actor: User, run_id: int, confirm_token: str, now: datetime
) -> ActionRun:
    """The prepared run, if this person's token confirms it now; else the refusal that says why."""
    run = await session.scalar(select(ActionRun).where(ActionRun.id == run_id))
    if run is None:
        raise NotFound(f"No action run {run_id}.")
    if run.prepared_by_id != actor.id:
        raise NotPermitted("Only the person who prepared this run can confirm it.")
    if not hmac.compare_digest(_hash(confirm_token or ""), run.confirm_token_hash):
        raise NotPermitted("The confirmation token does not match this run.")
    if run.state != "awaiting_confirmation":
        raise Conflict(ALREADY_CONFIRMED)
    if run.expires_at <= now:
        raise Gone(
            f"This confirmation expired at {run.expires_at:%H:%M:%S} UTC; nothing was sent. Prepare it again."
        )
    return run


async def _claim(session: AsyncSession, *, run: ActionRun, now: datetime) -> bool:
    """Move the run to `running` if it is still awaiting confirmation: the row count says whether
    this confirmation won (two at once cannot both get the row)."""
    claimed = await session.execute(
        update(ActionRun)
        .where(
            ActionRun.id == run.id,
            ActionRun.state == "awaiting_confirmation",
            ActionRun.expires_at > now,
        )
        .values(state="running", confirmed_at=now, started_at=now)
    )
    return claimed.rowcount == 1  # type: ignore[attr-defined]


async def _record_outcome(
    session: AsyncSession, *, run: ActionRun, outcome: outbound.Outcome, finished: datetime
) -> None:
    await session.execute(
        update(ActionRun)
        .where(ActionRun.id == run.id, ActionRun.state == "running")
        .values(
            state=outcome.state,
            finished_at=finished,
            http_status=outcome.http_status,
            duration_ms=outcome.duration_ms,
            response_excerpt=outcome.excerpt,
            error=outcome.error,
        )
    )


async def confirm_action_run(
    session: AsyncSession,
    *,
    catalog: Catalog,
    actor: User,
    run_id: int,
    confirm_token: str,
    typed_name: str | None = None,
) -> RunView:
    """Confirm a prepared run and execute it exactly once; the result goes on the timeline."""
    incidents.require_responder(actor)
    now = clock.now()
    run = await _confirmable_run(session, actor=actor, run_id=run_id, confirm_token=confirm_token, now=now)
    spec = _spec(catalog, run.action)
    # The incident row lock serialises confirmations on one incident (the cooldown holds under
    # concurrency) and with resolving it.
    incident = await session.scalar(select(Incident).where(Incident.id == run.incident_id).with_for_update())
    assert incident is not None
    await _check_may_run(session, actor=actor, spec=spec, incident=incident)
    if spec.dangerous and (typed_name or "").strip() != spec.name:
        raise InvalidInput(
            f"{spec.title} is dangerous: type its name, {spec.name}, to confirm.", field="typed_name"
        )
    await _check_cooldown(session, spec=spec, incident=incident, now=now)
    if not await _claim(session, run=run, now=now):
        await session.rollback()
        raise Conflict(ALREADY_CONFIRMED)
    await session.commit()  # `running` is on record before anything leaves this process

    outcome = await executor.send(
        catalog,
        run_id=run.id,
        method=run.method,
        url=run.url,
        headers=run.request_headers,
        body=run.request_body,
        timeout=run.timeout_ms / 1000,
    )
    finished = clock.now()
    await _record_outcome(session, run=run, outcome=outcome, finished=finished)
    incidents.record_entry(
        session, incident, actor, "action_run", _timeline_text(spec, run.id, outcome), at=finished
    )
    await session.commit()
    ACTION_RUNS.labels(spec.name, outcome.state).inc()
    return await get_action_run(session, catalog=catalog, run_id=run.id)


async def run_action_now(
    session: AsyncSession, *, catalog: Catalog, actor: User, ref: str, name: str
) -> RunView:
    """For an action that needs no confirmation step: the click that asked for it is the
    confirmation. The same run record is written and claimed."""
    spec = _spec(catalog, name)
    if spec.requires_confirmation:
        raise Conflict(f"{spec.title} needs a confirmation: review what it sends first.")
    view, token = await prepare_action_run(session, catalog=catalog, actor=actor, ref=ref, name=name)
    return await confirm_action_run(
        session, catalog=catalog, actor=actor, run_id=view.run.id, confirm_token=token, typed_name=spec.name
    )


def _timeline_text(spec: ActionSpec, run_id: int, outcome: outbound.Outcome) -> str:
    link = f"[run {run_id}](/action-runs/{run_id})"
    if outcome.state == "timed_out":
        result = f"timed out after {outcome.duration_ms / 1000:.1f} s"
    elif outcome.http_status is not None:
        verb = "succeeded" if outcome.state == "succeeded" else "failed"
        result = f"{verb}, HTTP {outcome.http_status} in {outcome.duration_ms} ms"
    else:
        result = f"failed: {outcome.error or 'no answer'}".rstrip(".")
    return f"Ran webhook `{spec.name}` ({spec.title}): {result}. {link}"
