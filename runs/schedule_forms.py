"""The schedule form: what to run, where, and when (a preset or a raw cron expression)."""

from __future__ import annotations

import json
from datetime import datetime
from itertools import islice

from cron_descriptor import Options, get_description
from croniter import croniter
from django import forms

from accounts.models import User
from accounts.permissions import datastore_levels, visible_datastore_ids
from datastores.models import Datastore
from runs.models import Operation
from runs.policy import level_allows
from runs.schedules import InvalidCron, next_fire_time

PRESETS = [
    ("", "Custom (cron expression below)"),
    ("0 * * * *", "Every hour"),
    ("0 2 * * *", "Every day at 02:00 UTC"),
    ("0 2 * * 1-5", "Weekdays at 02:00 UTC"),
    ("0 2 * * 1", "Every Monday at 02:00 UTC"),
    ("0 2 1 * *", "On the 1st of each month at 02:00 UTC"),
]


def cron_in_words(cron: str) -> str:
    options = Options()
    options.use_24hour_time_format = True
    try:
        return get_description(cron, options) + " (UTC)"
    except Exception:  # the library raises several kinds on odd input; the cron still stands
        return cron


def next_firings(cron: str, after: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` firings after ``after`` (UTC); InvalidCron if it is no schedule."""
    next_fire_time(cron, after)  # validates as a firing would (5 fields, fires at all)
    return list(islice(croniter(cron, after).all_next(datetime), count))


def editable_datastores(user: User) -> list[Datastore]:
    """Datastores on which the user may schedule (launch): Editors and admins."""
    stores = Datastore.objects.order_by("name")
    visible = visible_datastore_ids(user)
    if visible is not None:
        stores = stores.filter(pk__in=visible)
    stores = list(stores)
    levels = datastore_levels(user, [s.pk for s in stores])
    return [s for s in stores if level_allows(levels.get(s.pk))]


class ScheduleForm(forms.Form):
    name = forms.CharField(max_length=100)
    datastore = forms.TypedChoiceField(coerce=int)
    operation = forms.ChoiceField(
        choices=[c for c in Operation.choices if c[0] != Operation.EXTERNAL_SCAN]
    )
    destination_datastore = forms.TypedChoiceField(
        coerce=int, required=False, empty_value=None, label="Destination (Promote only)"
    )
    preset = forms.ChoiceField(choices=PRESETS, required=False, label="When")
    cron = forms.CharField(
        max_length=100, required=False, label="Cron expression (UTC)",
        help_text="minute hour day-of-month month day-of-week, e.g. 30 2 * * 1-5. "
        "Used instead of the preset when given.",
    )
    config = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text='The operation\'s options as JSON, e.g. {"incremental": true}. Empty: defaults.',
    )

    def __init__(self, *args, user: User, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(s.pk, s.name) for s in editable_datastores(user)]
        self.fields["datastore"].choices = choices
        self.fields["destination_datastore"].choices = [("", "—"), *choices]
        if editing:
            self.fields["datastore"].disabled = True  # a schedule stays on its datastore

    def clean_config(self):
        text = self.cleaned_data["config"].strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError("Not valid JSON.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("A JSON object, e.g. {}.")
        return value

    def clean(self):
        data = super().clean()
        cron = (data.get("cron") or "").strip() or data.get("preset") or ""
        if not cron:
            self.add_error("cron", "Choose a preset or write a cron expression.")
        else:
            try:
                next_fire_time(cron, datetime.now().astimezone())
            except InvalidCron as exc:
                self.add_error("cron", str(exc))
        data["cron"] = cron
        return data
