"""The ``assay`` command line: External Scans of local CSV files, Runs for pipelines, checks
(and checks as code: ``checks export`` / ``checks apply``) and anomalies.

It talks to an Assay server over the REST API only (``--url``/``ASSAY_URL``,
``--token``/``ASSAY_TOKEN``), and evaluates checks locally with the same engine the server's
Scan uses (``datastores.quality.checks.evaluate_rows``).

Exit codes: 0 done; 1 the server refused or could not be reached (its message is printed);
2 bad usage or a local input problem (nothing was registered); 3 the work was registered but
its outcome is bad (a Run that ended Failure or Aborted with ``--wait`` or ``runs wait``, or
with warnings under ``--fail-on-warnings``; anomalies with ``--fail-on-anomalies``).

Reads (GET) are retried when the server drops a kept-alive connection under them: a long
``--wait`` must not fail because one poll met a closed socket.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

OK, API_FAILED, BAD_INPUT, BAD_OUTCOME = 0, 1, 2, 3
# Methods whose repetition changes nothing more: safe to send again after a dropped connection.
IDEMPOTENT = {"GET", "HEAD", "OPTIONS"}
RETRIES = 3
TERMINAL = {"success", "failure", "aborted"}


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = BAD_INPUT):
        super().__init__(message)
        self.exit_code = exit_code


class ApiError(CliError):
    def __init__(self, status: int, detail: str, code: str = "",
                 errors: dict[str, list[str]] | None = None):
        super().__init__(f"{detail} (HTTP {status}{', ' + code if code else ''})", API_FAILED)
        self.status = status
        self.errors = errors or {}


# -- HTTP --------------------------------------------------------------------------------------
class Api:
    def __init__(self, url: str, token: str, timeout: float):
        root = url.rstrip("/").removesuffix("/api/v1")
        self.root = root
        self.client = httpx.Client(
            base_url=f"{root}/api/v1",
            headers={"Authorization": f"Bearer {token}", "User-Agent": "assay-cli"},
            timeout=timeout,
        )

    def call(self, method: str, path: str, **kwargs) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            response.read()
        finally:
            response.close()
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{self.root} did not answer like an Assay server (HTTP "
                f"{response.status_code}, {response.headers.get('content-type', '?')})",
                API_FAILED,
            ) from None

    def stream_text(self, path: str) -> Iterator[str]:
        response = self._send("GET", path)
        try:
            yield from response.iter_text()
        finally:
            response.close()

    def _send(self, method: str, path: str, **kwargs):
        attempts = RETRIES if method in IDEMPOTENT else 1
        for attempt in range(1, attempts + 1):
            request = self.client.build_request(method, path, **kwargs)
            try:
                response = self.client.send(request, stream=True)
                break
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError) as exc:
                # A kept-alive connection the server (or a proxy) closed: a fresh one answers.
                if attempt == attempts:
                    raise CliError(f"cannot reach {self.root}: {exc}", API_FAILED) from None
                time.sleep(0.2 * attempt)
            except httpx.HTTPError as exc:
                raise CliError(f"cannot reach {self.root}: {exc}", API_FAILED) from None
        if response.status_code >= 400:
            response.read()
            response.close()
            raise _api_error(response)
        return response


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        detail, code = str(body["detail"]), str(body.get("code", ""))
        errors = body.get("errors") if isinstance(body.get("errors"), dict) else None
    except (ValueError, KeyError, TypeError):
        detail, code, errors = response.reason_phrase or "error", "", None
    return ApiError(response.status_code, detail, code, errors)


def connect(args: argparse.Namespace) -> Api:
    url = args.url or os.environ.get("ASSAY_URL", "")
    token = args.token or os.environ.get("ASSAY_TOKEN", "")
    if not url:
        raise CliError("no server: pass --url or set ASSAY_URL (e.g. http://127.0.0.1:8000)")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url must start with http:// or https://, not {url!r}")
    if not token:
        raise CliError("no API token: pass --token or set ASSAY_TOKEN")
    return Api(url, token, args.timeout)


# -- external-scan -----------------------------------------------------------------------------
def cmd_external_scan(args: argparse.Namespace) -> int:
    from datastores.quality.checks import CheckSpec, RowDecodeError, evaluate_rows

    path = Path(args.csv)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    api = connect(args)
    found = api.call(
        "GET", f"/datastores/{args.datastore}/containers", params={"name": args.container}
    )["items"]
    if not found:
        raise CliError(f"datastore {args.datastore} has no container named {args.container!r}")
    container = found[0]
    fields = {field["name"]: field["type"] for field in container["fields"]}
    checks = container["checks"]
    specs = [
        CheckSpec(key=str(c["id"]), type=c["type"], field=c["field"], params=c["params"])
        for c in checks
    ]
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            _check_header(path, reader.fieldnames, fields)
            evaluation = evaluate_rows(
                _strict_rows(path, reader),
                specs,
                field_types=fields,
                now=datetime.now(UTC),
                example_limit=args.examples,
            )
    except RowDecodeError as exc:
        raise CliError(f"{path}: {exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: not a readable UTF-8 CSV file: {exc}") from None

    results = []
    for check in checks:
        outcome = evaluation.results[str(check["id"])]
        if outcome.error is not None:
            results.append({"check": check["id"], "error": outcome.error[:1000]})
        else:
            results.append(
                {
                    "check": check["id"],
                    "failed_count": outcome.failed_count,
                    "examples": outcome.examples,
                }
            )
    source = args.source or f"assay external-scan {path.name}"
    run = api.call(
        "POST",
        "/external-scans",
        json={
            "datastore": args.datastore,
            "config": {"containers": [args.container], "source": source},
        },
    )
    try:
        api.call(
            "POST",
            f"/external-scans/{run['id']}/results",
            json={
                "container": args.container,
                "records_scanned": evaluation.records_scanned,
                "results": results,
            },
        )
        run = api.call("POST", f"/external-scans/{run['id']}/finish")
    except CliError as exc:
        # Leave no Run open forever; if it already ended (aborted by someone), so be it.
        with contextlib.suppress(CliError):
            api.call("POST", f"/runs/{run['id']}/abort")
        raise CliError(f"Run #{run['id']}: {exc}", exc.exit_code) from None

    anomalies = run["metrics"].get("anomalies_identified", 0)
    print(
        f"Run #{run['id']} External Scan of {run['datastore']['name']}.{args.container}: "
        f"{run['status']}"
    )
    print(
        f"  {evaluation.records_scanned} records scanned, {len(checks)} checks, "
        f"{anomalies} anomalies identified"
    )
    for check in checks:
        outcome = evaluation.results[str(check["id"])]
        if outcome.error is not None:
            print(f"  ERROR  #{check['id']} {check['description']}: {outcome.error}")
        elif outcome.failed:
            print(f"  FAIL   #{check['id']} {check['description']}: {outcome.failed_count} failed")
        else:
            print(f"  ok     #{check['id']} {check['description']}")
    return BAD_OUTCOME if args.fail_on_anomalies and anomalies else OK


def _check_header(path: Path, header: list[str] | None, fields: Mapping[str, str]) -> None:
    """The CSV must have exactly the container's columns (in any order)."""
    if not header:
        raise CliError(f"{path}: empty file, expected a header row")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    missing = [name for name in fields if name not in header]
    unexpected = [name for name in header if name not in fields]
    if duplicates or missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing columns: {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected columns: {', '.join(unexpected)}")
        if duplicates:
            problems.append(f"repeated columns: {', '.join(duplicates)}")
        raise CliError(
            f"{path}: the columns do not match the container's fields ({'; '.join(problems)}). "
            f"Expected: {', '.join(fields)}. Nothing was registered."
        )


def _strict_rows(path: Path, reader: csv.DictReader) -> Iterator[dict[str, str | None]]:
    """Rows with exactly one value per column: DictReader would pad a short row with None
    (read as NULLs, failing not_null checks that the file never asked for) and keep a long
    row's extra values aside. ``line_num`` is the file's line (quoted values may span lines)."""
    width = len(reader.fieldnames or ())
    for row in reader:
        if None in row:  # restkey: more values than the header has columns
            raise CliError(
                f"{path}: line {reader.line_num} has more values than the header has columns "
                f"({width}). Nothing was registered."
            )
        if None in row.values():  # restval: fewer values
            given = sum(value is not None for value in row.values())
            raise CliError(
                f"{path}: line {reader.line_num} has {given} value{'s' * (given != 1)} but the "
                f"header has {width} columns. Nothing was registered."
            )
        yield row


# -- runs --------------------------------------------------------------------------------------
def cmd_runs_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for key in ("status", "operation", "datastore"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.cursor:
        params["cursor"] = args.cursor
    page = connect(args).call("GET", "/runs", params=params)
    if args.json:
        print(json.dumps(page, indent=2))
        return OK
    print(f"{'ID':>7}  {'OPERATION':<13} {'STATUS':<9} {'DATASTORE':<20} {'CREATED':<20} PROGRESS")
    for run in page["items"]:
        print(
            f"{run['id']:>7}  {run['operation']:<13} {run['status']:<9} "
            f"{run['datastore']['name'][:20]:<20} {run['created_at'][:19]:<20} {_progress(run)}"
        )
    if page["next_cursor"]:
        print(f"more: --cursor {page['next_cursor']}")
    return OK


def cmd_runs_launch(args: argparse.Namespace) -> int:
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as exc:
        raise CliError(f"--config is not valid JSON: {exc}") from None
    body: dict[str, Any] = {
        "operation": args.operation,
        "datastore": args.datastore,
        "config": config,
    }
    if args.destination is not None:
        body["destination_datastore"] = args.destination
    api = connect(args)
    run = api.call("POST", "/runs", json=body)
    _print_run_line(run, args.json)
    if not args.wait:
        return OK
    return _wait(api, run, args)


def cmd_runs_wait(args: argparse.Namespace) -> int:
    api = connect(args)
    return _wait(api, api.call("GET", f"/runs/{args.run_id}"), args)


def _wait(api: Api, run: dict[str, Any], args: argparse.Namespace) -> int:
    """Poll until the Run ends; its outcome is the exit code."""
    deadline = time.monotonic() + args.wait_timeout if args.wait_timeout else None
    while run["status"] not in TERMINAL:
        if deadline is not None and time.monotonic() > deadline:
            raise CliError(f"Run #{run['id']} still {run['status']} after {args.wait_timeout} s",
                           BAD_OUTCOME)
        time.sleep(args.poll)
        run = api.call("GET", f"/runs/{run['id']}")
    _print_run_line(run, args.json)
    if run["status"] != "success":
        if not args.json and run["error"]:
            print(f"  error: {run['error']}", file=sys.stderr)
        return BAD_OUTCOME
    if args.fail_on_warnings and run["has_warnings"]:
        if not args.json:
            print(f"  Run #{run['id']} has warnings (see: assay runs show {run['id']} --log)",
                  file=sys.stderr)
        return BAD_OUTCOME
    return OK


def cmd_runs_abort(args: argparse.Namespace) -> int:
    run = connect(args).call("POST", f"/runs/{args.run_id}/abort")
    _print_run_line(run, args.json)
    return OK


def cmd_runs_resume(args: argparse.Namespace) -> int:
    return _new_run(args, "resume")


def cmd_runs_rerun(args: argparse.Namespace) -> int:
    return _new_run(args, "rerun")


def _new_run(args: argparse.Namespace, action: str) -> int:
    api = connect(args)
    run = api.call("POST", f"/runs/{args.run_id}/{action}")
    _print_run_line(run, args.json)
    return _wait(api, run, args) if args.wait else OK


def cmd_runs_delete(args: argparse.Namespace) -> int:
    connect(args).call("DELETE", f"/runs/{args.run_id}")
    if args.json:
        print(json.dumps({"deleted": args.run_id}))
    else:
        print(f"Run #{args.run_id} deleted.")
    return OK


def cmd_runs_show(args: argparse.Namespace) -> int:
    api = connect(args)
    if args.log:
        for chunk in api.stream_text(f"/runs/{args.run_id}/log.txt"):
            sys.stdout.write(chunk)
        return OK
    run = api.call("GET", f"/runs/{args.run_id}")
    if args.json:
        print(json.dumps(run, indent=2))
        return OK
    aborting = " (aborting)" if run["abort_requested"] and run["status"] == "running" else ""
    warn = " with warnings" if run["has_warnings"] else ""
    print(f"Run #{run['id']} {run['operation']} on {run['datastore']['name']}: "
          f"{run['status']}{aborting}{warn}")
    who = run["triggered_by"]
    print(f"  triggered by {who['name']} ({who['kind']}, via {who['via']})")
    if run["aborted_by"]:
        print(f"  aborted by {run['aborted_by']['name']}")
    print(f"  created {run['created_at']}  started {run['started_at'] or '-'}  "
          f"finished {run['finished_at'] or '-'}")
    print(f"  progress {_progress(run)}")
    for key, value in sorted(run["metrics"].items()):
        print(f"  {key}: {value}")
    if run["error"]:
        print(f"  error: {run['error']}")
    print(f"  actions: {', '.join(run['actions']) or '-'}")
    return OK


def _progress(run: Mapping[str, Any]) -> str:
    progress = run["progress"]
    if progress["total"] is None:
        return "-"
    return f"{progress['done']} / {progress['total']} {progress['unit']}".strip()


def _print_run_line(run: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(run))
    else:
        aborting = run["abort_requested"] and run["status"] == "running"
        print(f"Run #{run['id']} {run['operation']} on {run['datastore']['name']}: "
              f"{run['status']}{' (abort requested)' if aborting else ''}")


# -- checks and anomalies ----------------------------------------------------------------------
def cmd_checks_list(args: argparse.Namespace) -> int:
    params = _filters(args, ("datastore", "container", "field", "type", "status", "origin"))
    page = connect(args).call("GET", "/checks", params=params)
    if args.json:
        print(json.dumps(page, indent=2))
        return OK
    print(f"{'ID':>7}  {'STATUS':<9} {'ORIGIN':<9} {'CONTAINER':<24} CHECK")
    for check in page["items"]:
        print(f"{check['id']:>7}  {check['status']:<9} {check['origin']:<9} "
              f"{check['container']['name'][:24]:<24} {check['label']}")
    _more(page)
    return OK


def cmd_checks_show(args: argparse.Namespace) -> int:
    check = connect(args).call("GET", f"/checks/{args.check_id}")
    if args.json:
        print(json.dumps(check, indent=2))
        return OK
    print(f"Check #{check['id']} {check['label']} on {check['datastore']['name']}."
          f"{check['container']['name']}: {check['status']} ({check['origin']})")
    if check["params"] is not None:
        print(f"  params: {json.dumps(check['params'], sort_keys=True)}")
        print(f"  description: {check['description']}")
    for result in check["recent"][-10:]:
        outcome = ("could not run" if result["passed"] is None
                   else "passed" if result["passed"] else f"{result['failed_count']} failed")
        print(f"  Run #{result['run']} {result['evaluated_at'][:19]}: {outcome}")
    print(f"  actions: {', '.join(check['actions']) or '-'}")
    return OK


def cmd_checks_create(args: argparse.Namespace) -> int:
    body = {"container": args.container, "type": args.type, "params": _json_arg(args.params),
            "status": args.status}
    if args.field:
        body["field"] = args.field
    if args.description:
        body["description"] = args.description
    check = connect(args).call("POST", "/checks", json=body)
    print(json.dumps(check) if args.json else f"Check #{check['id']} created ({check['status']}).")
    return OK


def cmd_checks_update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.field is not None:
        body["field"] = args.field
    if args.params is not None:
        body["params"] = _json_arg(args.params)
    if args.description is not None:
        body["description"] = args.description
    if not body:
        raise CliError("nothing to change: pass --field, --params or --description")
    check = connect(args).call("PATCH", f"/checks/{args.check_id}", json=body)
    print(json.dumps(check) if args.json else f"Check #{check['id']} saved.")
    return OK


def cmd_transition(args: argparse.Namespace) -> int:
    """Activate/archive/draft checks, acknowledge/resolve/reopen anomalies: one or many."""
    body: dict[str, Any] = {"action": args.action, "ids": args.ids}
    if getattr(args, "comment", None):
        body["comment"] = args.comment
    result = connect(args).call("POST", f"/{args.kind}/bulk", json=body)
    if args.json:
        print(json.dumps(result))
    else:
        noun = "check" if args.kind == "checks" else "anomaly"
        for pk in result["changed"]:
            print(f"{noun} #{pk}: {args.action} done")
        for pk, reason in result["skipped"].items():
            print(f"{noun} #{pk}: skipped: {reason}")
    return OK if not result["skipped"] else BAD_OUTCOME


def cmd_anomalies_list(args: argparse.Namespace) -> int:
    params = _filters(args, ("status", "datastore", "container", "check_type", "check",
                             "found_after", "found_before"))
    page = connect(args).call("GET", "/anomalies", params=params)
    if args.json:
        print(json.dumps(page, indent=2))
        return OK
    print(f"{'ID':>7}  {'STATUS':<13} {'FAILED':>8}  {'CONTAINER':<24} CHECK")
    for anomaly in page["items"]:
        print(f"{anomaly['id']:>7}  {anomaly['status']:<13} {anomaly['failed_count']:>8}  "
              f"{anomaly['container']['name'][:24]:<24} {anomaly['label']}")
    _more(page)
    return OK


def cmd_anomalies_show(args: argparse.Namespace) -> int:
    anomaly = connect(args).call("GET", f"/anomalies/{args.anomaly_id}")
    if args.json:
        print(json.dumps(anomaly, indent=2))
        return OK
    print(f"Anomaly #{anomaly['id']} {anomaly['label']} on {anomaly['datastore']['name']}."
          f"{anomaly['container']['name']}: {anomaly['status']}, "
          f"{anomaly['failed_count']} failed records")
    found = anomaly["found_by"]
    if found:
        print(f"  found by Run #{found['id']}{'' if found['exists'] else ' (deleted)'} "
              f"at {anomaly['created_at'][:19]}, seen {anomaly['times_seen']} time(s)")
    if anomaly["examples"] is None:
        print("  examples: hidden at your permission level")
    else:
        for row in anomaly["examples"]:
            print(f"  example: {json.dumps(row, sort_keys=True)}")
    for event in anomaly["history"]:
        comment = f": {event['comment']}" if event["comment"] else ""
        print(f"  {event['at'][:19]} {event['from_status'] or 'found'} -> {event['to_status']}"
              f" by {event['by']}{comment}")
    return OK


def _filters(args: argparse.Namespace, names) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": args.limit}
    for name in names:
        if getattr(args, name, None) is not None:
            params[name] = getattr(args, name)
    if args.cursor:
        params["cursor"] = args.cursor
    return params


def _more(page: Mapping[str, Any]) -> None:
    if page["next_cursor"]:
        print(f"more: --cursor {page['next_cursor']}")


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--params is not valid JSON: {exc}") from None


# -- checks as code ----------------------------------------------------------------------------
EXPORT_KEYS = ("id", "container", "type", "field", "params", "status", "origin", "description")


def cmd_checks_export(args: argparse.Namespace) -> int:
    import yaml

    api = connect(args)
    checks: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"datastore": args.datastore, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = api.call("GET", "/checks", params=params)
        checks += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    if any(check["params"] is None for check in checks):
        raise CliError("exporting checks needs the Viewer permission or higher: their "
                       "parameters are hidden at your level", API_FAILED)
    checks.sort(key=lambda c: (c["container"]["name"], c["id"]))
    entries = []
    for check in checks:
        entry = {"id": check["id"], "container": check["container"]["name"],
                 "type": check["type"], "field": check["field"], "params": check["params"],
                 "status": check["status"], "origin": check["origin"],
                 "description": check["description"]}
        entries.append({key: entry[key] for key in EXPORT_KEYS})
    document = {"datastore": args.datastore, "checks": entries}
    sys.stdout.write(
        "# Checks of an Assay datastore. Edit, then: assay checks apply FILE [--dry-run]\n"
        "# Entries without an id are created; checks missing here are left as they are.\n"
    )
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))
    return OK


def cmd_checks_apply(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    document, lines = _read_checks_file(path)
    api = connect(args)
    try:
        result = api.call(
            "POST", f"/datastores/{document['datastore']}/checks/apply",
            json={"checks": document["checks"], "dry_run": args.dry_run},
        )
    except ApiError as exc:
        if exc.status == 422 and exc.errors:
            for key, messages in sorted(exc.errors.items(), key=lambda kv: _line_of(kv[0], lines)):
                for message in messages:
                    print(f"{path}:{_line_of(key, lines)}: {key}: {message}", file=sys.stderr)
            raise CliError(f"{path}: invalid, nothing was changed") from None
        raise
    counts = {"create": 0, "update": 0, "unchanged": 0}
    for change in result["changes"]:
        counts[change["kind"]] += 1
        if change["kind"] == "create":
            print(f"+ {change['container']}: {change['label']} "
                  f"({change['changes']['status'][1]})"
                  + (f" as #{change['id']}" if change["id"] else ""))
        elif change["kind"] == "update":
            details = "; ".join(
                f"{name} {_show(old)} -> {_show(new)}"
                for name, (old, new) in change["changes"].items()
            )
            print(f"~ #{change['id']} {change['container']}: {change['label']}: {details}")
    verb = "Would apply (dry run, nothing changed)" if args.dry_run else "Applied"
    print(f"{verb}: {counts['create']} created, {counts['update']} updated, "
          f"{counts['unchanged']} unchanged.")
    return OK


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)


def _read_checks_file(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The document and the line of each entry and key (``"3"``, ``"3.params"``), 1-based."""
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise CliError(f"{path}:{line}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("checks"), list):
        raise CliError(f"{path}:1: expected a mapping with 'datastore' and a 'checks' list")
    datastore = document.get("datastore")
    if not isinstance(datastore, int) or isinstance(datastore, bool) or datastore < 1:
        raise CliError(f"{path}:1: 'datastore' must be the datastore's id")
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        if key_node.value == "checks" and isinstance(value_node, yaml.SequenceNode):
            for index, item in enumerate(value_node.value):
                lines[str(index)] = item.start_mark.line + 1
                if isinstance(item, yaml.MappingNode):
                    for entry_key, _ in item.value:
                        lines[f"{index}.{entry_key.value}"] = entry_key.start_mark.line + 1
    return document, lines


def _line_of(key: str, lines: Mapping[str, int]) -> int:
    """The line of ``3.params.min``: that key's, else its parent's, else the entry's."""
    parts = key.split(".")
    while parts:
        line = lines.get(".".join(parts))
        if line:
            return line
        parts.pop()
    return 1


# -- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    server = argparse.ArgumentParser(add_help=False)
    group = server.add_argument_group("server")
    group.add_argument("--url", help="Assay server, e.g. http://127.0.0.1:8000 (env ASSAY_URL)")
    group.add_argument("--token", help="API token (env ASSAY_TOKEN)")
    group.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout in seconds")

    parser = argparse.ArgumentParser(
        prog="assay", description="Assay data-quality Runs from the command line."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = commands.add_parser(
        "external-scan",
        parents=[server],
        help="evaluate a container's active checks over a local CSV and register the results",
    )
    scan.add_argument("--datastore", type=int, required=True, help="datastore id")
    scan.add_argument("--container", required=True, help="container name")
    scan.add_argument("--csv", required=True, help="CSV file with a header row")
    scan.add_argument("--source", help="where this scan ran (shown with the Run)")
    scan.add_argument("--examples", type=_example_count, default=10,
                      help="failing rows kept per check, 0 to 100 (default 10)")
    scan.add_argument("--fail-on-anomalies", action="store_true",
                      help="exit with 3 when any check fails")
    scan.set_defaults(handler=cmd_external_scan)

    runs = commands.add_parser("runs", help="list, launch, abort and show Runs")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")

    listing = runs_commands.add_parser("list", parents=[server], help="newest Runs first")
    listing.add_argument("--status", action="append", help="repeatable")
    listing.add_argument("--operation", action="append", help="repeatable")
    listing.add_argument("--datastore", type=int, action="append", help="id; repeatable")
    listing.add_argument("--limit", type=_positive, default=20)
    listing.add_argument("--cursor", help="next page, as printed by a previous call")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    listing.set_defaults(handler=cmd_runs_list)

    launch = runs_commands.add_parser("launch", parents=[server], help="launch a Run")
    launch.add_argument("--datastore", type=int, required=True, help="datastore id")
    launch.add_argument("--operation", required=True,
                        help="sync, profile, scan, export, materialize or promote")
    launch.add_argument("--config", default="{}", help="configuration as a JSON object")
    launch.add_argument("--destination", type=int, help="destination datastore id (Promote)")
    launch.add_argument("--wait", action="store_true",
                        help="wait until the Run ends; exit 3 unless it succeeded")
    _wait_options(launch)
    launch.add_argument("--json", action="store_true", help="print the API's JSON")
    launch.set_defaults(handler=cmd_runs_launch)

    wait = runs_commands.add_parser(
        "wait", parents=[server], help="wait until a Run ends; exit 3 unless it succeeded")
    wait.add_argument("run_id", type=_positive)
    _wait_options(wait)
    wait.add_argument("--json", action="store_true", help="print the API's JSON")
    wait.set_defaults(handler=cmd_runs_wait)

    abort = runs_commands.add_parser("abort", parents=[server], help="abort a Run")
    abort.add_argument("run_id", type=_positive)
    abort.add_argument("--json", action="store_true", help="print the API's JSON")
    abort.set_defaults(handler=cmd_runs_abort)

    for name, handler, what in (
        ("resume", cmd_runs_resume, "a new Run over the units that did not succeed"),
        ("rerun", cmd_runs_rerun, "a new Run with the same configuration"),
    ):
        again = runs_commands.add_parser(name, parents=[server], help=what)
        again.add_argument("run_id", type=_positive)
        again.add_argument("--wait", action="store_true",
                           help="wait until the new Run ends; exit 3 unless it succeeded")
        _wait_options(again)
        again.add_argument("--json", action="store_true", help="print the API's JSON")
        again.set_defaults(handler=handler)

    delete = runs_commands.add_parser("delete", parents=[server], help="delete a finished Run")
    delete.add_argument("run_id", type=_positive)
    delete.add_argument("--json", action="store_true", help="print the outcome as JSON")
    delete.set_defaults(handler=cmd_runs_delete)

    show = runs_commands.add_parser("show", parents=[server], help="one Run")
    show.add_argument("run_id", type=_positive)
    show.add_argument("--json", action="store_true", help="print the API's JSON")
    show.add_argument("--log", action="store_true", help="print the Run's whole log")
    show.set_defaults(handler=cmd_runs_show)

    _checks_parser(commands, server)
    _anomalies_parser(commands, server)
    return parser


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait-timeout", type=float, default=0, help="seconds; 0: no limit")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between checks")
    parser.add_argument("--fail-on-warnings", action="store_true",
                        help="when waiting, exit 3 also if the Run succeeded with warnings")


def _list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=_positive, default=20)
    parser.add_argument("--cursor", help="next page, as printed by a previous call")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _checks_parser(commands, server) -> None:
    checks = commands.add_parser("checks", help="list, author, transition, export and apply checks")
    sub = checks.add_subparsers(dest="checks_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", parents=[server], help="newest checks first")
    listing.add_argument("--datastore", type=_positive)
    listing.add_argument("--container", type=_positive, help="container id")
    listing.add_argument("--field")
    listing.add_argument("--type")
    listing.add_argument("--status", choices=["draft", "active", "archived"])
    listing.add_argument("--origin", choices=["inferred", "authored"])
    _list_options(listing)
    listing.set_defaults(handler=cmd_checks_list)

    show = sub.add_parser("show", parents=[server], help="one check and its recent results")
    show.add_argument("check_id", type=_positive)
    show.add_argument("--json", action="store_true", help="print the API's JSON")
    show.set_defaults(handler=cmd_checks_show)

    create = sub.add_parser("create", parents=[server], help="author a check")
    create.add_argument("--container", type=_positive, required=True, help="container id")
    create.add_argument("--type", required=True)
    create.add_argument("--field")
    create.add_argument("--params", default="{}", help="JSON object, e.g. '{\"min\": 0}'")
    create.add_argument("--description")
    create.add_argument("--status", default="draft", choices=["draft", "active"])
    create.add_argument("--json", action="store_true", help="print the API's JSON")
    create.set_defaults(handler=cmd_checks_create)

    update = sub.add_parser("update", parents=[server], help="edit an authored check")
    update.add_argument("check_id", type=_positive)
    update.add_argument("--field")
    update.add_argument("--params", help="JSON object")
    update.add_argument("--description")
    update.add_argument("--json", action="store_true", help="print the API's JSON")
    update.set_defaults(handler=cmd_checks_update)

    for action, text in (("activate", "make checks active"), ("archive", "archive checks"),
                         ("draft", "return checks to draft")):
        parser = sub.add_parser(action, parents=[server], help=text)
        parser.add_argument("ids", type=_positive, nargs="+", metavar="CHECK_ID")
        parser.add_argument("--json", action="store_true", help="print the API's JSON")
        parser.set_defaults(handler=cmd_transition, kind="checks", action=action)

    export = sub.add_parser("export", parents=[server], help="a datastore's checks as YAML")
    export.add_argument("--datastore", type=_positive, required=True)
    export.set_defaults(handler=cmd_checks_export)

    apply = sub.add_parser("apply", parents=[server],
                           help="make a datastore's checks match a YAML file (one transaction)")
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    apply.set_defaults(handler=cmd_checks_apply)


def _anomalies_parser(commands, server) -> None:
    anomalies = commands.add_parser("anomalies", help="list, show and act on anomalies")
    sub = anomalies.add_subparsers(dest="anomalies_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", parents=[server], help="newest anomalies first")
    listing.add_argument("--status", choices=["active", "acknowledged", "resolved"])
    listing.add_argument("--datastore", type=_positive)
    listing.add_argument("--container", type=_positive, help="container id")
    listing.add_argument("--check-type", dest="check_type")
    listing.add_argument("--check", type=_positive, help="check id")
    listing.add_argument("--found-after", dest="found_after", help="ISO 8601")
    listing.add_argument("--found-before", dest="found_before", help="ISO 8601")
    _list_options(listing)
    listing.set_defaults(handler=cmd_anomalies_list)

    show = sub.add_parser("show", parents=[server], help="one anomaly with examples and history")
    show.add_argument("anomaly_id", type=_positive)
    show.add_argument("--json", action="store_true", help="print the API's JSON")
    show.set_defaults(handler=cmd_anomalies_show)

    for action in ("acknowledge", "resolve", "reopen"):
        parser = sub.add_parser(action, parents=[server], help=f"{action} anomalies")
        parser.add_argument("ids", type=_positive, nargs="+", metavar="ANOMALY_ID")
        parser.add_argument("--comment", help="why (kept in the anomaly's history)")
        parser.add_argument("--json", action="store_true", help="print the API's JSON")
        parser.set_defaults(handler=cmd_transition, kind="anomalies", action=action)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def _example_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 100:  # the API keeps at most 100 examples per check
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 100")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CliError as exc:
        print(f"assay: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Piped into `head`: stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
