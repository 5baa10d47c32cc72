from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.team_list, name="teams"),
    path("<int:team_id>/", views.team_detail, name="team"),
    path("<int:team_id>/delete/", views.team_delete, name="team-delete"),
    path("<int:team_id>/members/", views.member_add, name="member-add"),
    path("<int:team_id>/members/<int:user_id>/remove/", views.member_remove, name="member-remove"),
    path("<int:team_id>/datastores/", views.team_datastores, name="team-datastores"),
]
