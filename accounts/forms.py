import zoneinfo
from functools import cache

from django import forms

from accounts.models import Level, Team, User
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
