from django.urls import path

from activity import views

app_name = "activity"

urlpatterns = [
    path("", views.activity_list, name="list"),
    path("new/", views.new_runs, name="new-runs"),
    path("bulk/", views.bulk_action, name="bulk"),
    path("runs/<int:run_id>/", views.run_detail, name="run"),
    path("runs/<int:run_id>/line/", views.run_line, name="run-line"),
    path("runs/<int:run_id>/more/", views.run_more, name="run-more"),
    path("runs/<int:run_id>/live/", views.run_live, name="run-live"),
    path("runs/<int:run_id>/logs/", views.run_logs, name="run-logs"),
    path("runs/<int:run_id>/log.txt", views.run_log_download, name="run-log-download"),
    path("runs/<int:run_id>/<str:action>/", views.run_action, name="run-action"),
]
