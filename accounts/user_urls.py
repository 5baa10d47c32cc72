from django.urls import path

from accounts import admin_views as views

app_name = "users"

urlpatterns = [
    path("", views.user_list, name="list"),
    path("<int:user_id>/", views.user_detail, name="detail"),
    path("<int:user_id>/role/", views.user_role, name="role"),
    path("<int:user_id>/set-password-link/", views.user_set_password_link,
         name="set-password-link"),
    path("<int:user_id>/<str:state>/", views.user_active, name="active"),
]
