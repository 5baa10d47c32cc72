"""Datastore pages of the web UI, mounted at /datastores/."""

from django.urls import path

from activity import views
from datastores import views as datastore_views
from datastores.urls import datastore_patterns

app_name = "datastores"

urlpatterns = [
    path("", views.datastore_list, name="list"),
    path("new/", datastore_views.datastore_new, name="new"),
    path("<int:datastore_id>/edit/", datastore_views.datastore_edit, name="edit"),
    path("<int:datastore_id>/test/", datastore_views.datastore_test, name="test"),
    path("<int:datastore_id>/delete/", datastore_views.datastore_delete, name="delete"),
    path("<int:datastore_id>/teams/", datastore_views.datastore_teams, name="teams"),
    path("<int:datastore_id>/access/", datastore_views.datastore_access, name="access"),
    path("<int:datastore_id>/activity/", views.activity_list, name="activity"),
    path("<int:datastore_id>/launch/<str:operation>/", views.launch, name="launch"),
    *datastore_patterns,
]
