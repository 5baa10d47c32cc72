from django import forms

from notifications.models import Event, PayloadFormat


class RuleForm(forms.Form):
    name = forms.CharField(max_length=100)
    events = forms.MultipleChoiceField(
        choices=Event.choices, widget=forms.CheckboxSelectMultiple,
        label="Notify when a Run ends with",
    )
    webhook_url = forms.CharField(
        max_length=500, required=False, label="Webhook URL",
        help_text="Receives a POST signed with HMAC-SHA256 (header X-Assay-Signature).",
    )
    webhook_secret = forms.CharField(
        max_length=200, required=False, label="Signing secret",
        widget=forms.PasswordInput(render_value=False),
        help_text="At least 16 characters; stored encrypted and never shown again.",
    )
    payload_format = forms.ChoiceField(choices=PayloadFormat.choices, label="Payload")
    email_to = forms.CharField(max_length=500, required=False, label="Email to",
                               help_text="Comma-separated addresses.")

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        for field, messages in errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)
