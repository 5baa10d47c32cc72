"""Forms of the check and anomaly pages: list filters, and one check form per check type.

The check form only collects values; the service validates them with the engine's own
``validate_check`` and its messages land next to the field they are about.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils import timezone

from datastores.models import AnomalyStatus, CheckOrigin, CheckStatus, Container
from datastores.quality import CHECK_TYPES
from datastores.selectors import AnomalyFilters, CheckFilters
from runs.selectors import day_start

TYPE_CHOICES = [(t, t.replace("_", " ").capitalize()) for t in CHECK_TYPES]
TABLE_LEVEL = {"row_count_between"}
NUMERIC_FIELD_TYPES = {"integer", "float", "decimal"}


class _Filters(forms.Form):
    def __init__(self, data, *, datastores, containers):
        super().__init__(data)
        self.fields["datastore"].choices = [("", "All datastores")] + [
            (str(d.pk), d.name) for d in datastores
        ]
        self.fields["container"].choices = [("", "All containers")] + [
            (str(c.pk), c.name) for c in containers
        ]

    def values(self) -> dict[str, Any]:
        """The valid filters; an invalid value is reported on the form and ignored."""
        self.is_valid()
        return {name: self.cleaned_data.get(name) for name in self.fields}


class CheckFilterForm(_Filters):
    datastore = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    container = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    field = forms.CharField(required=False, max_length=255,
                            widget=forms.TextInput(attrs={"placeholder": "name", "size": 10}))
    type = forms.ChoiceField(required=False, choices=[("", "Any type"), *TYPE_CHOICES])
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *CheckStatus.choices])
    origin = forms.ChoiceField(required=False, choices=[("", "Any origin"), *CheckOrigin.choices])

    def filters(self) -> CheckFilters:
        data = self.values()
        return CheckFilters(
            datastore=data["datastore"], container=data["container"],
            field=(data["field"] or "").strip(), type=data["type"] or "",
            status=data["status"] or "", origin=data["origin"] or "",
        )


class AnomalyFilterForm(_Filters):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *AnomalyStatus.choices]
    )
    datastore = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    container = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    check_type = forms.ChoiceField(
        required=False, label="Check type", choices=[("", "Any type"), *TYPE_CHOICES]
    )
    found_from = forms.DateField(
        required=False, label="Found from", widget=forms.DateInput(attrs={"type": "date"})
    )
    found_to = forms.DateField(
        required=False, label="Found to", widget=forms.DateInput(attrs={"type": "date"})
    )

    def filters(self, *, check: int | None = None) -> AnomalyFilters:
        data = self.values()
        start, end = data["found_from"], data["found_to"]
        zone = timezone.get_current_timezone()  # days of the viewer's time zone
        return AnomalyFilters(
            status=data["status"] or "",
            datastore=data["datastore"],
            container=data["container"],
            check_type=data["check_type"] or "",
            check=check,
            found_after=day_start(start, zone) if start else None,
            found_before=day_start(end + dt.timedelta(days=1), zone)
            if end and end < dt.date.max
            else None,
        )


class CheckForm(forms.Form):
    """The form of one check type: its field (unless table-level) and its parameters."""

    def __init__(self, data=None, *, type: str, container: Container, statuses=None,
                 initial=None):
        super().__init__(data, initial=initial)
        self.type = type
        self.field_types = dict(container.fields.values_list("name", "type"))
        if type not in TABLE_LEVEL:
            self.fields["field"] = forms.ChoiceField(
                choices=[("", "Choose a field")] + [(n, f"{n} ({t})")
                                                    for n, t in self.field_types.items()],
            ) if self.field_types else forms.CharField(max_length=255)
        for name, field in _param_fields(type).items():
            self.fields[name] = field
        self.fields["description"] = forms.CharField(
            required=False, max_length=255,
            help_text="Optional; by default the check is described from its parameters.",
        )
        if statuses:
            self.fields["status"] = forms.ChoiceField(
                choices=[(s, CheckStatus(s).label) for s in statuses], initial=statuses[0],
                help_text="Drafts do nothing until an author activates them.",
            )

    def definition(self) -> dict[str, Any]:
        """The values for the service (call after ``is_valid``)."""
        data = self.cleaned_data
        params: dict[str, Any] = {}
        if self.type in ("between", "row_count_between"):
            params = {k: _number(data.get(k)) for k in ("min", "max") if data.get(k) is not None}
        elif self.type == "expected_values":
            numeric = self.field_types.get(data.get("field")) in NUMERIC_FIELD_TYPES
            params = {"values": [_value(line, numeric) for line in _lines(data.get("values"))]}
        elif self.type == "matches_pattern":
            params = {"pattern": data.get("pattern", "")}
        elif self.type == "max_length":
            params = {"length": data.get("length")}
        return {
            "field_name": data.get("field", ""),
            "params": params,
            "description": data.get("description", ""),
        }

    def add_service_errors(self, errors: dict[str, list[str]], detail: str) -> None:
        placed = False
        for key, messages in errors.items():
            target = key if key in self.fields else None
            for message in messages:
                self.add_error(target, message)
                placed = True
        if not placed:
            self.add_error(None, detail)


def _param_fields(type: str) -> dict[str, forms.Field]:
    if type == "between":
        return {"min": forms.FloatField(required=False), "max": forms.FloatField(required=False)}
    if type == "row_count_between":
        return {
            "min": forms.IntegerField(required=False, min_value=0),
            "max": forms.IntegerField(required=False, min_value=0),
        }
    if type == "expected_values":
        return {"values": forms.CharField(
            widget=forms.Textarea(attrs={"rows": 5}), help_text="One value per line.",
        )}
    if type == "matches_pattern":
        return {"pattern": forms.CharField(
            max_length=500, help_text="A regular expression; it may match anywhere in the value.",
        )}
    if type == "max_length":
        return {"length": forms.IntegerField(min_value=1, max_value=10**9)}
    return {}


def initial_for(check) -> dict[str, Any]:
    """A stored check as the form's initial values."""
    params = check.params or {}
    initial: dict[str, Any] = {"field": check.field_name, "description": check.description}
    if check.type == "expected_values":
        initial["values"] = "\n".join(str(v) for v in params.get("values") or [])
    else:
        initial.update(params)
    return initial


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _number(value: float | int | None):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _value(text: str, numeric: bool):
    if not numeric:
        return text
    try:
        return int(text)
    except ValueError:
        try:
            return _number(float(text))
        except ValueError:
            return text  # the engine says why a text value is wrong for a number field
