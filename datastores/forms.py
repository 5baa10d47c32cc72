"""The datastore create/edit form. Passwords are write-only: never rendered back."""

from django import forms

from accounts.models import Role, Team, User
from datastores.models import (
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_RUN_LIMIT,
    MAX_CONNECTION_LIMIT,
    MAX_RUN_LIMIT,
    url_without_password,
)

URL_HELP = (
    "A SQLAlchemy URL: postgresql://user@host:5432/database, or sqlite:////absolute/path.db "
    "for a file in Assay's datastore folders."
)


class UrlInput(forms.TextInput):
    """Shows a URL back (a form with errors) without its password."""

    def format_value(self, value):
        return super().format_value(url_without_password(value) if value else value)


def grantable_teams(user: User):
    """Teams the user may grant a datastore to: all for admins; theirs and Public otherwise."""
    teams = Team.objects.order_by("-is_public", "name")
    if user.role != Role.ADMIN:
        teams = teams.filter(members=user) | teams.filter(is_public=True)
    return teams.distinct()


def teams_field(user: User) -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        queryset=grantable_teams(user),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Teams that get this datastore at their level.",
    )


class DatastoreTeamsForm(forms.Form):
    """The teams holding a datastore. A manager's form lists the teams they may change; the
    others keep holding it (``datastore_set_teams`` receives them back unchanged)."""

    def __init__(self, *args, user: User, datastore, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["teams"] = teams_field(user)
        self.fields["teams"].label_from_instance = lambda team: (
            f"{team.name} ({team.get_level_display()})"
        )
        self.kept = list(datastore.teams.exclude(pk__in=self.fields["teams"].queryset.values("pk")))

    def clean_teams(self):
        return [*self.cleaned_data["teams"], *self.kept]


class DatastoreForm(forms.Form):
    name = forms.CharField(max_length=100)
    source_url = forms.CharField(
        label="Source URL", max_length=2000, help_text=URL_HELP, widget=UrlInput
    )
    password = forms.CharField(
        required=False,
        max_length=1000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Or give it in the URL. Never shown again.",
    )
    enrichment_url = forms.CharField(
        label="Enrichment URL",
        required=False,
        max_length=2000,
        widget=UrlInput,
        help_text="Where Export and Materialize write. Empty: none.",
    )
    enrichment_password = forms.CharField(
        required=False,
        max_length=1000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    enrichment_prefix = forms.CharField(max_length=40, initial="assay")
    run_limit = forms.IntegerField(
        label="Runs at once", min_value=1, max_value=MAX_RUN_LIMIT, initial=DEFAULT_RUN_LIMIT,
        required=False,
        help_text="More Runs of this datastore wait in line, so others get workers too.",
    )
    connection_limit = forms.IntegerField(
        label="Connections per Run", min_value=1, max_value=MAX_CONNECTION_LIMIT,
        initial=DEFAULT_CONNECTION_LIMIT, required=False,
        help_text="A Scan runs a table's statements side by side on up to this many.",
    )

    def __init__(self, *args, user: User, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            keep = "Leave empty to keep the stored password (kept while host, port and user stay)."
            self.fields["password"].help_text = keep
            self.fields["enrichment_password"].help_text = keep
        else:
            self.fields["teams"] = teams_field(user)

    def service_arguments(self, *, editing: bool) -> dict:
        data = dict(self.cleaned_data)
        for key in ("password", "enrichment_password"):
            # An empty password field means "no change" on edit, "none" on create.
            if not data[key]:
                data[key] = None
        for key in ("run_limit", "connection_limit"):
            if data[key] is None:  # left empty: the default, or no change
                del data[key]
        if not editing:
            data["team_ids"] = [team.pk for team in data.pop("teams", [])]
        return data

    def add_service_errors(self, errors: dict[str, list[str]], detail: str) -> None:
        if not errors:
            self.add_error(None, detail)
        for key, messages in errors.items():
            field = key if key in self.fields else None
            for message in messages:
                self.add_error(field, message)
