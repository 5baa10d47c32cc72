from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("<int:datastore_id>/notifications/", views.rules, name="rules"),
    path("<int:datastore_id>/notifications/<int:rule_id>/delete/", views.rule_delete,
         name="delete"),
    path("<int:datastore_id>/notifications/deliveries/", views.deliveries, name="deliveries"),
]
