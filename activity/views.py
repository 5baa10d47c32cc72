"""Activity, Run detail, Run actions, Datastores and Launch pages.

Views stay thin: reads come from ``activity.selectors``, writes go through ``runs.services``
(which ask ``runs.policy``). htmx endpoints render a fragment of the page's own template
(``page.html#fragment``), so a plain full-page load always shows the same markup.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseBadRequest, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.permissions import can_create_datastore
from datastores.models import Datastore
from runs import errors, fairness, services
from runs.logs import log_download_response
from runs.models import Operation, RunStatus, Via
from runs.operations import get_operation
from runs.policy import Action

from . import selectors
from .forms import ActivityFilterForm, LaunchForm

NO_CHANGE = 204  # htmx swaps nothing on 204: an unchanged poll costs one small response
# External Scans are opened by the CLI through the API, never from a form.
LAUNCHABLE = [op for op in Operation if op != Operation.EXTERNAL_SCAN]


# -- Activity ----------------------------------------------------------------------------------
def _filter_form(request, params, stores, datastore_id: int | None = None):
    """The filter form over ``params``; a datastore page filters on its own datastore."""
    data = params.copy()
    datastore = None
    if datastore_id is not None:
        datastore = next((s for s in stores if s.pk == datastore_id), None)
        if datastore is None:
            raise Http404("Datastore not found.")
        data["datastore"] = str(datastore_id)
    return ActivityFilterForm(data, datastores=stores), datastore


@login_required
@require_GET
def activity_list(request, datastore_id: int | None = None):
    stores = list(selectors.visible_datastores(request.user))
    form, datastore = _filter_form(request, request.GET, stores, datastore_id)
    filters = form.filters().resolved()
    before = _positive_int(request.GET, "before")
    page = selectors.run_page(request.user, filters, before=before, stores=stores)
    selectors.attach_actions(request.user, page.items)
    fairness.attach_wait_reasons(page.items)
    paged = "before" in request.GET
    filter_params = [(name, value) for name, value in form.data.items()
                     if name in form.fields and value]
    return render(request, "activity/activity.html", {
        "form": form,
        "page": page,
        "runs": page.items,
        "heatmap": selectors.heatmap(request.user, filters, stores=stores),
        "datastore": datastore,
        "filtered": form.given and any(name != "datastore" or not datastore
                                       for name, _ in filter_params),
        "paged": paged,
        "next_url": request.get_full_path(),
        "bulk": any(run.actions for run in page.items),
        "filter_params": filter_params,
        # The first page follows new Runs: the poll carries the filters and the newest id seen.
        "live_query": None if paged else _live_query(
            filter_params, max((run.pk for run in page.items), default=0)),
    })


def _live_query(filter_params, after: int) -> str:
    query = QueryDict(mutable=True)
    for name, value in filter_params:
        query[name] = value
    query["after"] = str(after)
    return query.urlencode()


@login_required
@require_GET
def new_runs(request):
    """Poll target of the Activity list: Runs newer than ``after`` matching the filters.

    Nothing new anywhere answers 204 after one index lookup (no Run row is read); otherwise
    the matching new rows go to the top of the list, and the poller moves on to the newest id.
    """
    after = _positive_int(request.GET, "after") or 0
    newest = selectors.newest_run_id()
    if newest <= after:
        return HttpResponse(status=NO_CHANGE)
    stores = list(selectors.visible_datastores(request.user))
    form = ActivityFilterForm(request.GET, datastores=stores)
    filters = form.filters().resolved()
    runs = selectors.runs_after(request.user, filters, after, stores=stores)
    selectors.attach_actions(request.user, runs)
    fairness.attach_wait_reasons(runs)
    filter_params = [(name, value) for name, value in request.GET.items()
                     if name in form.fields and value]
    return render(request, "activity/activity.html#new-runs", {
        "runs": runs,
        "live_query": _live_query(filter_params, newest),
        "next_url": _htmx_page(request),
        "bulk": True,
    })


@login_required
@require_POST
def bulk_action(request):
    """Abort or Delete several Runs: the selected ones, or every Run matching the filters.

    Without ``confirmed`` it shows what would happen (the page without JavaScript, the
    dialog's body with it); confirmed, each Run goes through the one-Run service.
    """
    try:
        action = Action(request.POST.get("action", ""))
    except ValueError:
        return HttpResponseBadRequest("Unknown action.")
    if action not in services.BULK_ACTIONS:
        return HttpResponseBadRequest(f"{action.label} is not offered for several Runs.")
    back = _safe_next(request) or reverse("activity:list")
    stores = list(selectors.visible_datastores(request.user))
    everything = request.POST.get("all") == "1"
    invalid_filters = False
    if everything:
        form, _ = _filter_form(request, request.POST, stores)
        filters = form.filters().resolved()
        # An ignored filter widens the list: "every matching Run" must not mean more than asked.
        invalid_filters = bool(form.errors)
        runs, capped = ([], False) if invalid_filters else selectors.bulk_runs(
            request.user, ids=None, filters=filters, stores=stores)
    else:
        ids = [int(v) for v in request.POST.getlist("run") if v.isdigit() and int(v) < 2**62]
        runs, capped = selectors.bulk_runs(request.user, ids=ids, filters=None, stores=stores)
    if request.POST.get("confirmed") != "1" or not runs:
        context = {"action": action, "runs": runs, "capped": capped, "everything": everything,
                   "invalid_filters": invalid_filters,
                   "plan": selectors.bulk_plan(request.user, action, runs), "next_url": back}
        template = "activity/bulk_confirm.html"
        if request.htmx:
            template += "#explanation"
        return render(request, template, context)
    outcomes = services.run_bulk(user=request.user, action=action, runs=runs)
    summary = ", ".join(f"{len(ids)} {outcome}" for outcome, ids in outcomes.items())
    detail = "; ".join(
        f"{outcome}: {', '.join(f'#{i}' for i in ids)}" for outcome, ids in outcomes.items())
    done = {services.BulkOutcome.ABORTED, services.BulkOutcome.STOPPING,
            services.BulkOutcome.DELETED}
    level = messages.SUCCESS if set(outcomes) <= done else messages.WARNING
    messages.add_message(request, level, f"{action.label}: {summary}.")
    messages.info(request, f"Per Run: {detail}.")
    return redirect(back)


@login_required
@require_GET
def run_line(request, run_id: int):
    """Poll target of an active Activity row: 204 while nothing changed."""
    state = selectors.live_state(request.user, run_id)
    if state is None:
        raise Http404("Run not found.")
    if request.GET.get("v") == selectors.state_version(state):
        return HttpResponse(status=NO_CHANGE)
    run = selectors.visible_run(request.user, run_id)
    selectors.attach_actions(request.user, [run])
    fairness.attach_wait_reasons([run])
    # "bulk": a Run with actions had its select box on the page; the new line keeps it.
    return render(request, "activity/activity.html#run-line",
                  {"run": run, "next_url": _htmx_page(request), "bulk": True})


@login_required
@require_GET
def run_more(request, run_id: int):
    """The expanded part of an Activity row; refreshes itself while the Run is active."""
    state = selectors.live_state(request.user, run_id)
    if state is None:
        raise Http404("Run not found.")
    if request.GET.get("v") == selectors.state_version(state):
        return HttpResponse(status=NO_CHANGE)
    run = selectors.visible_run(request.user, run_id)
    fairness.attach_wait_reasons([run])
    return render(request, "activity/activity.html#run-more", {
        "run": run,
        "units": selectors.unit_results(run),
        "log_tail": selectors.log_tail(run.pk, run_level=True),
    })


# -- Run detail --------------------------------------------------------------------------------
@login_required
@require_GET
def run_detail(request, run_id: int):
    run = selectors.with_actions(request.user, selectors.visible_run(request.user, run_id,
                                                                     detail=True))
    fairness.attach_wait_reasons([run])
    lines = selectors.log_tail(run.pk, lines=selectors.LOG_PAGE_LINES)
    return render(request, "activity/run_detail.html", {
        "run": run,
        "units": selectors.unit_results(run),
        "later_runs": selectors.later_runs(run),
        "log_lines": lines,
        "log_cursor": lines[-1].pk if lines else 0,
        "log_seen": run.log_lines,
        "log_clipped": run.log_lines > len(lines),
        "next_url": request.get_full_path(),
    })


@login_required
@require_GET
def run_live(request, run_id: int):
    """Poll target of the detail page's live region (status, progress, timeline, results)."""
    state = selectors.live_state(request.user, run_id)
    if state is None:
        raise Http404("Run not found.")
    if request.GET.get("v") == selectors.state_version(state):
        return HttpResponse(status=NO_CHANGE)
    run = selectors.with_actions(request.user, selectors.visible_run(request.user, run_id,
                                                                     detail=True))
    fairness.attach_wait_reasons([run])
    return render(request, "activity/run_detail.html#live-update", {
        "run": run, "units": selectors.unit_results(run), "next_url": _htmx_page(request),
    })


@login_required
@require_GET
def run_logs(request, run_id: int):
    """New log lines after ``after`` (appended by the client), plus the next poller.

    ``n`` is the Run's line counter the client has seen: when it still matches and the Run is
    active there is nothing new, which one query on the Run row can tell.
    """
    state = selectors.live_state(request.user, run_id)
    if state is None:
        raise Http404("Run not found.")
    after = _positive_int(request.GET, "after") or 0
    active = state["status"] in (RunStatus.QUEUED, RunStatus.RUNNING)
    seen = request.GET.get("n")
    if active and seen == str(state["log_lines"]):
        return HttpResponse(status=NO_CHANGE)
    # The status was read before the lines: if it said terminal, no line can follow these.
    lines = selectors.log_after(run_id, after)
    complete = len(lines) < selectors.LOG_PAGE_LINES
    return render(request, "activity/run_detail.html#log-chunk", {
        "run_id": run_id,
        "log_lines": lines,
        "log_cursor": lines[-1].pk if lines else after,
        "log_seen": state["log_lines"] if complete else "",
        "log_active": active or not complete,
        "oob": True,
    })


@login_required
@require_GET
def run_log_download(request, run_id: int):
    run = selectors.visible_run(request.user, run_id)
    return log_download_response(run.pk)


# -- actions -----------------------------------------------------------------------------------
ACTION_SERVICES = {
    Action.ABORT: services.run_abort,
    Action.RESUME: services.run_resume,
    Action.RERUN: services.run_rerun,
    Action.DELETE: services.run_delete,
}


@login_required
@require_http_methods(["GET", "POST"])
def run_action(request, run_id: int, action: str):
    """GET (or a POST without ``confirmed``) shows the confirmation; a confirmed POST acts.

    Buttons carry ``hx-confirm`` and post ``confirmed=1`` through htmx; without JavaScript
    the same form lands on the confirmation page first.
    """
    try:
        action = Action(action)
    except ValueError:
        raise Http404("Unknown action.") from None
    run = selectors.visible_run(request.user, run_id)
    back = _safe_next(request) or reverse("activity:run", args=[run.pk])
    try:
        services.authorize_action(request.user, run, action)
        if request.method == "GET" or request.POST.get("confirmed") != "1":
            template = "activity/confirm.html"
            if request.htmx:  # the body of the confirmation dialog
                template += "#explanation"
            remaining = selectors.resume_preview(run) if action == Action.RESUME else None
            return render(request, template, {"run": run, "action": action, "next_url": back,
                                              "remaining": remaining})
        result = ACTION_SERVICES[action](run=run, user=request.user)
    except errors.NotFound as exc:
        raise Http404(exc.detail) from None
    except errors.PermissionDenied as exc:
        raise PermissionDenied(exc.detail) from None
    except errors.RunServiceError as exc:
        # Typically a race: the Run changed state since the page was drawn.
        messages.error(request, exc.detail)
        return _go(request, back)
    if action == Action.DELETE:
        messages.success(request, f"Run #{run_id} deleted.")
        # Back to the list the button was on; never to the page of the Run just deleted.
        gone = back.startswith(reverse("activity:run", args=[run_id]))
        return _go(request, reverse("activity:list") if gone else back)
    if action in (Action.RESUME, Action.RERUN):
        verb = "Resumed" if action == Action.RESUME else "Reran"
        messages.success(request, f"{verb} Run #{run_id} as Run #{result.pk}.")
        return _go(request, reverse("activity:run", args=[result.pk]))
    # Abort: redraw the fragment the button lives in, so "Aborting…" shows at once.
    if request.htmx and request.htmx.target == f"run-{run.pk}-line":
        selectors.attach_actions(request.user, [result])
        return render(request, "activity/activity.html#run-line",
                      {"run": result, "next_url": back, "bulk": True})
    if request.htmx and request.htmx.target == "run-live":
        run = selectors.with_actions(
            request.user, selectors.visible_run(request.user, run.pk, detail=True)
        )
        return render(request, "activity/run_detail.html#live-update",
                      {"run": run, "units": selectors.unit_results(run), "next_url": back})
    messages.success(request, f"Abort of Run #{run_id} requested.")
    return _go(request, back)


# -- Datastores and Launch ---------------------------------------------------------------------
@login_required
@require_GET
def datastore_list(request):
    return render(request, "activity/datastores.html", {
        "datastores": selectors.datastore_cards(request.user),
        "operations": LAUNCHABLE,
        "can_add": can_create_datastore(request.user),
    })


@login_required
@require_http_methods(["GET", "POST"])
def launch(request, datastore_id: int, operation: str):
    datastore = get_object_or_404(Datastore, pk=datastore_id)
    try:
        services.authorize_datastore(request.user, datastore)
    except errors.NotFound as exc:
        raise Http404(exc.detail) from None
    except errors.PermissionDenied as exc:
        raise PermissionDenied(exc.detail) from None
    if operation not in LAUNCHABLE:
        raise Http404("This operation cannot be launched from a form.")
    destinations = (
        selectors.editable_datastores(request.user) if operation == Operation.PROMOTE else []
    )
    containers = selectors.catalogue(datastore)
    form = LaunchForm(
        request.POST if request.method == "POST" else None,
        operation=operation,
        config_model=get_operation(operation).Config,
        datastore=datastore,
        containers=containers,
        destinations=destinations,
    )
    status = 200
    if request.method == "POST":
        config = form.config() if form.is_valid() else None
        if config is not None and not form.errors:
            try:
                run = services.run_launch(
                    user=request.user, datastore=datastore, operation=operation, config=config,
                    via=Via.WEB, destination=form.cleaned_data.get("destination_datastore"),
                )
            except errors.InvalidConfig as exc:
                form.add_config_errors(exc.errors, exc.detail)
            except errors.NotFound as exc:
                raise Http404(exc.detail) from None
            except errors.PermissionDenied as exc:
                raise PermissionDenied(exc.detail) from None
            else:
                messages.success(request, f"Launched {run}.")
                return redirect("activity:run", run.pk)
        status = 422
    return render(request, "activity/launch.html", {
        "datastore": datastore,
        "operation": Operation(operation),
        "form": form,
        "operations": LAUNCHABLE,
        "destination_containers": selectors.container_names(destinations),
        "needs_catalogue": operation != Operation.SYNC and not containers,
    }, status=status)


# -- helpers -----------------------------------------------------------------------------------
def _positive_int(params, name: str) -> int | None:
    value = params.get(name, "")
    return int(value) if value.isdigit() and 0 < int(value) < 2**62 else None


def _safe_next(request) -> str | None:
    candidate = request.POST.get("next") or request.GET.get("next")
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return None


def _htmx_page(request) -> str:
    """The URL of the page a fragment is drawn into (action forms come back to it)."""
    return (request.htmx and request.htmx.current_url_abs_path) or reverse("activity:list")


def _go(request, url: str):
    # An htmx POST must navigate the whole page, not swap the next page into a fragment.
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
