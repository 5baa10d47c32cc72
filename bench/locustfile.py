"""Locust users of the load benchmark (bench/load.py starts them; not meant to be run alone).

Two kinds of people, as they use Assay:

* ``RunWatcher``: opens a Run's detail page and keeps it open, polling every 2 s what the page
  polls (htmx: the live region ``runs/<id>/live/?v=`` and the log tail ``runs/<id>/logs/``,
  following the URLs each answer carries) plus the API's ``GET /runs/{id}``, as a script
  watching the same Run would. Half of them watch the Runs being launched during the test (the
  newest Run of the demo datastore, found through the API list), half a seeded Run that stays
  running (an unchanged poll every time). When a Run ends, the watcher opens the next one.
* ``ActivityBrowser``: the Activity page with its filters, deeper pages, a heatmap cell and a
  user-name filter, and the page's own 2 s poll for new Runs while it is open.

Every request must answer its expected status without a redirect (a 302 to the login page
would otherwise count as a success): anything else is a failure in locust's statistics.
``LOADBENCH_CONFIG`` names the JSON file bench/load.py wrote (sessions, tokens, Run ids).
"""

from __future__ import annotations

import html
import json
import os
import random
import re

from locust import HttpUser, between, constant, task

CONFIG = json.loads(open(os.environ["LOADBENCH_CONFIG"]).read())  # noqa: SIM115
HTMX = {"HX-Request": "true"}
# What the TLS-terminating proxy adds in front of a production deployment.
PROXY = {"X-Forwarded-Proto": "https"}
HX_GET = re.compile(r'hx-get="([^"]+)"')


def _get(user: HttpUser, url: str, name: str, *, expect=(200,), headers=None):
    with user.client.get(url, name=name, headers={**PROXY, **(headers or {})},
                         allow_redirects=False, catch_response=True) as response:
        if response.status_code not in expect:
            response.failure(f"{response.status_code} for {url}: {response.error or ''}")
        else:
            response.success()
        return response


def _poll_urls(text: str) -> dict[str, str]:
    """The live region's and the log tail's next poll URLs found in a page or fragment."""
    found = {}
    for url in HX_GET.findall(text):
        url = html.unescape(url)
        if "/live/" in url:
            found["live"] = url
        elif "/logs/" in url:
            found["logs"] = url
    return found


class _LoggedIn(HttpUser):
    abstract = True
    username = "bench-admin"

    def on_start(self) -> None:
        # Sessions are made by bench/load.py: production cookies are Secure, and this is http.
        self.client.cookies.set("sessionid", CONFIG["sessions"][self.username])


class RunWatcher(_LoggedIn):
    fixed_count = CONFIG["watchers"]
    wait_time = constant(2)

    def on_start(self) -> None:
        super().on_start()
        self.live_runs = random.random() < 0.5
        self.run_id = 0
        self.polls: dict[str, str] = {}

    def _open_next_run(self) -> None:
        if self.live_runs:
            with self.client.get(
                f"/api/v1/runs?datastore={CONFIG['demo_datastore']}&limit=1",
                name="API GET /runs?datastore=&limit=1", headers={**PROXY, **self._bearer()},
                allow_redirects=False, catch_response=True,
            ) as response:
                if response.status_code != 200:
                    response.failure(f"{response.status_code}: {response.error or ''}")
                    return
                self.run_id = response.json()["items"][0]["id"]
        else:
            self.run_id = random.choice(CONFIG["seeded_active"])
        page = _get(self, f"/activity/runs/{self.run_id}/", "Run detail page")
        self.polls = _poll_urls(page.text) if page.status_code == 200 else {}

    def _bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {CONFIG['tokens'][self.username]}"}

    @task
    def watch(self) -> None:
        if not self.polls:  # the Run ended (or none yet): the person opens the next one
            self._open_next_run()
            return
        for part, url in list(self.polls.items()):
            response = _get(self, url, f"poll {part}", expect=(200, 204), headers=HTMX)
            if response.status_code == 200:
                following = _poll_urls(response.text).get(part)
                if following:
                    self.polls[part] = following
                elif part == "live":
                    # The live region came back without a poll: the Run has ended.
                    self.polls.pop(part, None)
                    self.polls.pop("logs", None)
                    break
        _get(self, f"/api/v1/runs/{self.run_id}", "API GET /runs/{id}", headers=self._bearer())


class ActivityBrowser(_LoggedIn):
    fixed_count = CONFIG["browsers"]
    wait_time = between(1, 3)

    def on_start(self) -> None:
        super().on_start()
        self.username = random.choice(["bench-admin", "bench-editor"])
        self.client.cookies.set("sessionid", CONFIG["sessions"][self.username])
        self.poller = ""

    def _page(self, query: str, name: str) -> None:
        response = _get(self, f"/activity/{query}", name)
        if response.status_code == 200:
            pollers = [html.unescape(u) for u in HX_GET.findall(response.text)
                       if "/activity/new/" in u]
            self.poller = pollers[0] if pollers else ""

    @task(3)
    def first_page(self) -> None:
        self._page("", "Activity: first page")

    @task(3)
    def filtered(self) -> None:
        status = random.choice(["failure", "success", "aborted", "running"])
        operation = random.choice(["scan", "profile", "sync", "export"])
        self._page(f"?status={status}&operation={operation}", "Activity: status+operation")

    @task(2)
    def by_datastore(self) -> None:
        datastore = random.choice(CONFIG["datastores"][self.username])
        self._page(f"?datastore={datastore}", "Activity: datastore")

    @task(2)
    def deeper_page(self) -> None:
        before = random.randint(CONFIG["newest_run"] // 10, CONFIG["newest_run"])
        self._page(f"?before={before}", "Activity: page ?before=")

    @task(2)
    def heatmap_cell(self) -> None:
        day = random.choice(CONFIG["heatmap_days"])
        self._page(f"?date_from={day}&date_to={day}", "Activity: heatmap cell")

    @task(1)
    def by_user(self) -> None:
        self._page(f"?by=analyst{random.randint(0, 29):02d}", "Activity: by=<user>")

    @task(6)
    def poll_new_runs(self) -> None:
        if self.poller:
            response = _get(self, self.poller, "Activity: poll new Runs", expect=(200, 204),
                            headers=HTMX)
            # New Runs came: the answer carries the poller with its next URL.
            following = [html.unescape(u) for u in HX_GET.findall(response.text)
                         if "/activity/new/" in u]
            if response.status_code == 200 and following:
                self.poller = following[0]
