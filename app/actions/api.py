"""The actions JSON API under /api/v1: the catalog, prepare, confirm, read runs. Thin."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.actions import service
from app.actions.catalog import Catalog
from app.actions.schemas import ActionOut, ConfirmIn, PreparedOut, RunId, RunOut, RunPage
from app.auth.deps import CurrentUser
from app.db import SessionDep
from app.openapi import CHANGE, READ_ONE, errors
from app.schemas import Text, limited, one_of

router = APIRouter(prefix="/api/v1", tags=["actions"])


def catalog_of(request: Request) -> Catalog:
    return request.app.state.catalog


CatalogDep = Annotated[Catalog, Depends(catalog_of)]


@router.get("/actions", response_model=list[ActionOut], responses=errors(401))
async def list_actions(user: CurrentUser, catalog: CatalogDep) -> list[ActionOut]:
    """The webhook catalog from icc.toml."""
    return [ActionOut.of(spec) for spec in catalog.actions.values()]


@router.post(
    "/incidents/{ref}/actions/{name}/runs", status_code=201, response_model=PreparedOut, responses=CHANGE
)
async def prepare_run(
    ref: Text, name: Text, session: SessionDep, user: CurrentUser, catalog: CatalogDep
) -> PreparedOut:
    """Prepare a run: what will be sent, and a single-use `confirm_token`. Nothing is sent yet."""
    view, token = await service.prepare_action_run(session, catalog=catalog, actor=user, ref=ref, name=name)
    return PreparedOut(**RunOut.of(view).model_dump(), confirm_token=token)


@router.post(
    "/action-runs/{run_id}/confirm",
    response_model=RunOut,
    responses=errors(400, 401, 403, 404, 409, 410, 413, 422),
)
async def confirm_run(
    run_id: RunId, body: ConfirmIn, session: SessionDep, user: CurrentUser, catalog: CatalogDep
) -> RunOut:
    """Confirm (same user, before `expires_at`, once): the webhook is sent and the result returned."""
    view = await service.confirm_action_run(
        session,
        catalog=catalog,
        actor=user,
        run_id=run_id,
        confirm_token=body.confirm_token,
        typed_name=body.typed_name,
    )
    return RunOut.of(view)


@router.get("/action-runs/{run_id}", response_model=RunOut, responses=READ_ONE)
async def get_run(run_id: RunId, session: SessionDep, user: CurrentUser, catalog: CatalogDep) -> RunOut:
    return RunOut.of(await service.get_action_run(session, catalog=catalog, run_id=run_id))


@router.get("/incidents/{ref}/action-runs", response_model=RunPage, responses=READ_ONE)
async def incident_runs(ref: Text, session: SessionDep, user: CurrentUser, catalog: CatalogDep) -> RunPage:
    """Every run on the incident, newest first."""
    views = await service.list_action_runs(session, catalog=catalog, ref=ref)
    return RunPage(items=[RunOut.of(v) for v in views])


@router.get("/action-runs", response_model=RunPage, responses=READ_ONE)  # 404: no such incident
async def all_runs(
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    action: limited(64) | None = None,
    state: Annotated[limited(32) | None, one_of(("", *service.SHOWN_STATES))] = None,
    incident: limited(32) | None = None,
) -> RunPage:
    """Runs across incidents, newest first, filtered by action, state and incident."""
    views = await service.list_action_runs(
        session, catalog=catalog, action=action or None, state=state or None, ref=incident or None
    )
    return RunPage(items=[RunOut.of(v) for v in views])
