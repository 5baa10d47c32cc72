"""Datastore pages of the web UI, mounted at /datastores/."""

from django.urls import path

from activity import views
from datastores.urls import datastore_patterns

app_name = "datastores"

urlpatterns = [
    path("", views.datastore_list, name="list"),
    path("<int:datastore_id>/activity/", views.activity_list, name="activity"),
    path("<int:datastore_id>/launch/<str:operation>/", views.launch, name="launch"),
    *datastore_patterns,
]
