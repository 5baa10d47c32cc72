from django import forms

from audit.models import AuditAction


class AuditFilterForm(forms.Form):
    action = forms.MultipleChoiceField(choices=AuditAction.choices, required=False,
                                       widget=forms.SelectMultiple(attrs={"size": 6}))
    actor = forms.CharField(required=False, max_length=150, label="Actor (user name)")
    object = forms.CharField(required=False, max_length=255, label="Object name contains")
    after = forms.DateField(required=False, label="From (UTC)",
                            widget=forms.DateInput(attrs={"type": "date"}))
    before = forms.DateField(required=False, label="To (UTC, inclusive)",
                             widget=forms.DateInput(attrs={"type": "date"}))
    cursor = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
