"""URLs of the datastore, container, check and anomaly pages.

``datastore_patterns`` join the ``datastores`` namespace (activity/datastore_urls.py); checks
and anomalies have their own namespaces, mounted at /checks/ and /anomalies/.
"""

from django.urls import include, path

from datastores import quality_views as views

datastore_patterns = [
    path("<int:datastore_id>/", views.datastore_detail, name="detail"),
    path("<int:datastore_id>/containers/<int:container_id>/", views.container_detail,
         name="container"),
    path("<int:datastore_id>/containers/<int:container_id>/checks/new/", views.check_new,
         name="check-new"),
]

check_patterns = ([
    path("", views.check_list, name="list"),
    path("bulk/", views.check_bulk, name="bulk"),
    path("<int:check_id>/", views.check_detail, name="detail"),
    path("<int:check_id>/edit/", views.check_edit, name="edit"),
    path("<int:check_id>/<str:action>/", views.check_action, name="action"),
], "checks")

anomaly_patterns = ([
    path("", views.anomaly_list, name="list"),
    path("bulk/", views.anomaly_bulk, name="bulk"),
    path("<int:anomaly_id>/", views.anomaly_detail, name="detail"),
    path("<int:anomaly_id>/examples/", views.anomaly_examples, name="examples"),
    path("<int:anomaly_id>/<str:action>/", views.anomaly_action, name="action"),
], "anomalies")

urlpatterns = [
    path("checks/", include(check_patterns)),
    path("anomalies/", include(anomaly_patterns)),
]
