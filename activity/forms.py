"""Forms of the Activity filters and of the Launch page.

The Launch form is built from the operation's pydantic ``Config``: the config model stays the
one definition of an operation's options, the form only chooses a widget per field type.
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from typing import Any, Literal

from django import forms
from django.utils import timezone
from pydantic.fields import FieldInfo

from datastores.models import Datastore
from runs.models import ActorKind, Operation, RunStatus
from runs.selectors import RunFilters, day_start


class ActivityFilterForm(forms.Form):
    datastore = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    operation = forms.ChoiceField(
        required=False, choices=[("", "Any operation"), *Operation.choices]
    )
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *RunStatus.choices])
    trigger = forms.ChoiceField(
        required=False, label="Triggered by", choices=[("", "Anyone"), *ActorKind.choices]
    )
    by = forms.CharField(
        required=False, max_length=150, label="User or schedule",
        widget=forms.TextInput(attrs={"placeholder": "name", "size": 10}),
    )
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    run = forms.IntegerField(
        required=False, min_value=1, max_value=2**62, label="Run id",
        widget=forms.NumberInput(attrs={"placeholder": "#", "class": "narrow"}),
    )
    # Set by the Schedules page's link to a schedule's Runs.
    schedule = forms.IntegerField(
        required=False, min_value=1, max_value=2**62, widget=forms.HiddenInput
    )

    def __init__(self, data, *, datastores):
        super().__init__(data)
        self.fields["datastore"].choices = [("", "All datastores")] + [
            (str(d.pk), d.name) for d in datastores
        ]

    def clean(self):
        data = super().clean()
        date_from, date_to = data.get("date_from"), data.get("date_to")
        if date_from and date_to and date_from > date_to:
            self.add_error(None, f"From ({date_from:%b %-d, %Y}) is after To "
                                 f"({date_to:%b %-d, %Y}): no day lies between them, so the "
                                 "dates are ignored. Swap them to see that range.")
            data["date_from"] = data["date_to"] = None
        return data

    @property
    def given(self) -> bool:
        """Whether any filter was asked for, valid or not (then "Clear" is offered)."""
        return any(self.data.get(name) not in (None, "") for name in self.fields)

    def filters(self) -> RunFilters:
        """The valid filters; an invalid value is reported on the form and ignored.

        Dates are days of the current time zone (the viewer's on the pages)."""
        self.is_valid()
        zone = timezone.get_current_timezone()
        data = {name: self.cleaned_data.get(name) for name in self.fields}
        date_from, date_to = data["date_from"], data["date_to"]
        return RunFilters(
            datastores=() if data["datastore"] is None else (data["datastore"],),
            operations=(data["operation"],) if data["operation"] else (),
            statuses=(data["status"],) if data["status"] else (),
            trigger=data["trigger"] or "",
            triggered_by=(data["by"] or "").strip(),
            created_after=day_start(date_from, zone) if date_from else None,
            created_before=day_start(date_to + dt.timedelta(days=1), zone)
            if date_to and date_to < dt.date.max
            else None,
            run_id=data["run"],
            schedule_id=data["schedule"],
        )


# -- launch ------------------------------------------------------------------------------------
def _unwrap_optional(annotation) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(annotation)):
            return args[0], True
    return annotation, False


def _unwrap_annotated(annotation) -> tuple[Any, list]:
    """``PositiveInt`` is ``Annotated[int, Gt(0)]``: the base type, and its constraints (a
    ``Field(gt=0)`` inside ``Annotated`` holds them in its own ``metadata``)."""
    if typing.get_origin(annotation) is typing.Annotated:
        constraints = []
        for item in annotation.__metadata__:
            constraints.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        return typing.get_args(annotation)[0], constraints
    return annotation, []


def _bounds(metadata: list) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    for item in metadata:
        if getattr(item, "ge", None) is not None:
            bounds["min_value"] = item.ge
        if getattr(item, "gt", None) is not None:
            bounds["min_value"] = item.gt + 1
        if getattr(item, "le", None) is not None:
            bounds["max_value"] = item.le
        if getattr(item, "lt", None) is not None:
            bounds["max_value"] = item.lt - 1
    return bounds


def _default(info: FieldInfo):
    if info.default_factory is not None:
        return info.default_factory()
    return None if info.is_required() else info.default


class LaunchForm(forms.Form):
    """One form field per Config field; ``config()`` gives the dict for ``run_launch``."""

    def __init__(self, data=None, *, operation: str, config_model, datastore: Datastore,
                 containers: list[str], destinations: list[Datastore]):
        super().__init__(data)
        self.operation = operation
        self.datastore = datastore
        self._kinds: dict[str, str] = {}
        if operation == Operation.PROMOTE:
            self.fields["destination_datastore"] = forms.ModelChoiceField(
                queryset=Datastore.objects.filter(pk__in=[d.pk for d in destinations]),
                label="Destination datastore",
                help_text="Checks are copied to a container of this datastore.",
            )
        for name, info in config_model.model_fields.items():
            self.fields[name] = self._field(name, info, containers)

    def _field(self, name: str, info: FieldInfo, containers: list[str]) -> forms.Field:
        annotation, optional = _unwrap_optional(info.annotation)
        annotation, constraints = _unwrap_annotated(annotation)
        constraints += info.metadata
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        default = _default(info)
        common = {
            "label": name.replace("_", " ").capitalize(),
            "help_text": info.description or "",
            "required": False,
        }
        container_choices = [(c, c) for c in containers]
        if annotation is bool:
            self._kinds[name] = "bool"
            return forms.BooleanField(initial=bool(default), **common)
        if annotation is int:
            self._kinds[name] = "int"
            # A number with a default is required: a cleared field is an error to answer, not
            # a silent fall-back to the default. An optional one (None: no limit) may be empty.
            return forms.IntegerField(
                initial=default, **_bounds(constraints),
                **{**common, "required": default is not None and not optional},
                error_messages={"required": f"Enter a number (the default is {default})."},
            )
        if annotation is float:
            self._kinds[name] = "float"
            return forms.FloatField(initial=default, **_bounds(constraints), **common)
        if origin is Literal:
            self._kinds[name] = "choice"
            choices = [(str(a), str(a)) for a in args]
            if optional:
                choices = [("", "—"), *choices]
            return forms.ChoiceField(choices=choices, initial=default, **common)
        if origin is list and args and typing.get_origin(args[0]) is Literal:
            self._kinds[name] = "multi"
            return forms.MultipleChoiceField(
                choices=[(str(a), str(a)) for a in typing.get_args(args[0])],
                initial=default, widget=forms.CheckboxSelectMultiple, **common,
            )
        if origin is list and name == "containers":
            self._kinds[name] = "containers"
            common["help_text"] = common["help_text"] or "None selected means every container."
            if not containers:
                common["help_text"] = "No container is catalogued yet: run a Sync first."
            return forms.MultipleChoiceField(
                choices=container_choices, initial=default or [],
                widget=forms.SelectMultiple(
                    attrs={"size": min(10, max(4, len(containers))), "data-picker": ""}
                ),
                **common,
            )
        if annotation is str and name == "source_container":
            self._kinds[name] = "str"
            return forms.ChoiceField(choices=[("", "—"), *container_choices], **common)
        if annotation is str and name == "destination_container":
            self._kinds[name] = "str"
            common["help_text"] = common["help_text"] or "A container of the destination datastore."
            return forms.CharField(
                widget=forms.TextInput(attrs={"list": "destination-containers"}), **common
            )
        if annotation is str:
            self._kinds[name] = "str"
            return forms.CharField(initial=default, **common)
        if origin is list and args and _unwrap_annotated(args[0])[0] is int:
            self._kinds[name] = "int_list"
            common["help_text"] = common["help_text"] or "Comma-separated ids; empty for all."
            return forms.CharField(**common)
        # Anything richer is entered as JSON; the Config model validates it.
        self._kinds[name] = "json"
        return forms.CharField(
            initial=json.dumps(default) if default is not None else "",
            widget=forms.Textarea(attrs={"rows": 2}), **common,
        )

    def config(self) -> dict[str, Any]:
        """The config dict: fields left empty are omitted so the operation's defaults apply."""
        config: dict[str, Any] = {}
        for name, kind in self._kinds.items():
            value = self.cleaned_data.get(name)
            if kind == "bool":
                config[name] = bool(value)
            elif kind == "multi":
                # An empty choice is sent as such: the Config says whether that is allowed.
                config[name] = list(value or [])
            elif kind == "containers":
                if value:  # none selected means every container
                    config[name] = list(value)
            elif kind == "int_list":
                if value and value.strip():
                    parts = [p.strip() for p in value.split(",") if p.strip()]
                    if not all(p.isdigit() for p in parts):
                        self.add_error(name, "Enter ids separated by commas.")
                    else:
                        config[name] = [int(p) for p in parts]
            elif kind == "json":
                if value and value.strip():
                    try:
                        config[name] = json.loads(value)
                    except ValueError:
                        self.add_error(name, "Enter valid JSON.")
            elif value not in (None, ""):
                config[name] = value
        return config

    def add_config_errors(self, errors: dict[str, list[str]], detail: str) -> None:
        """Show InvalidConfig errors next to their field (``containers.0`` -> containers)."""
        placed = False
        for key, messages in errors.items():
            field = key.split(".")[0]
            if field == "destination" and "destination_datastore" in self.fields:
                field = "destination_datastore"
            target = field if field in self.fields else None
            for message in messages:
                self.add_error(target, message)
            placed = True
        if not placed:
            self.add_error(None, detail)
