import zoneinfo
from functools import cache

from django import forms

from accounts.models import Level, Role, Team, User
from datastores.models import Datastore


class TeamForm(forms.Form):
    name = forms.CharField(max_length=Team._meta.get_field("name").max_length)
    level = forms.TypedChoiceField(choices=Level.choices, coerce=int, initial=Level.VIEWER)


class MemberForm(forms.Form):
    user = forms.ModelChoiceField(queryset=User.objects.none(), empty_label="Choose a user…")

    def __init__(self, *args, team: Team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = (
            User.objects.filter(is_active=True).exclude(teams=team).order_by("username")
        )


class TeamDatastoresForm(forms.Form):
    datastores = forms.ModelMultipleChoiceField(
        queryset=Datastore.objects.order_by("name"), required=False,
        widget=forms.CheckboxSelectMultiple,
    )


@cache
def time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


class PreferencesForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        help_text="Every page shows times in this zone; date filters and the heatmap use its days.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = time_zone_choices()


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="To recognise it later, e.g. the pipeline "
                           "that uses it.")
    expires_on = forms.DateField(
        required=False, label="Expires on",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional. The token stops working at 00:00 UTC that day.",
    )


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)
    password = forms.CharField(
        required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label="Initial password",
        help_text="Leave empty to get a one-time link with which the user sets it.",
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
