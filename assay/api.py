"""REST API v1 (django-ninja). Routers live with their apps; this module assembles them."""

from ninja import NinjaAPI

api = NinjaAPI(title="Assay API", version="1", urls_namespace="api")
