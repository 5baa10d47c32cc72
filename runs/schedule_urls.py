from django.urls import path

from runs import schedule_views as views

app_name = "schedules"

urlpatterns = [
    path("", views.schedule_list, name="list"),
    path("new/", views.schedule_new, name="new"),
    path("preview/", views.schedule_preview, name="preview"),
    path("<int:schedule_id>/edit/", views.schedule_edit, name="edit"),
    path("<int:schedule_id>/delete/", views.schedule_remove, name="delete"),
    path("<int:schedule_id>/<str:state>/", views.schedule_toggle, name="toggle"),
]
