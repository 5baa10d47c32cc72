import hashlib
import secrets

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Role(models.TextChoices):
    MEMBER = "member", "Member"
    MANAGER = "manager", "Manager"
    ADMIN = "admin", "Admin"


class Level(models.IntegerChoices):
    """Team permission levels; the integer order is the privilege order."""

    REPORTER = 10, "Reporter"
    VIEWER = 20, "Viewer"
    DRAFTER = 30, "Drafter"
    AUTHOR = 40, "Author"
    EDITOR = 50, "Editor"


class AssayUserManager(UserManager):
    def create_superuser(self, username, email=None, password=None, **extra_fields):
        # A Django superuser who is a plain member in Assay would reach the Django admin
        # and be refused every Assay administration page.
        extra_fields.setdefault("role", Role.ADMIN)
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    # IANA name; every page shows times in it (see assay.middleware.user_time_zone).
    time_zone = models.CharField(max_length=64, default="UTC")

    objects = AssayUserManager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(role__in=Role.values), name="user_role_valid"),
        ]

    @property
    def is_admin_role(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username


PUBLIC_TEAM_NAME = "Public"


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    level = models.PositiveSmallIntegerField(choices=Level.choices, default=Level.VIEWER)
    is_public = models.BooleanField(default=False, editable=False)
    members = models.ManyToManyField(User, related_name="teams", blank=True)
    datastores = models.ManyToManyField("datastores.Datastore", related_name="teams", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(level__in=Level.values), name="team_level_valid"),
            # Exactly one Public team: every user belongs to it, nobody may delete it.
            models.UniqueConstraint(
                fields=["is_public"], condition=Q(is_public=True), name="single_public_team"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ApiToken(models.Model):
    """A bearer token for the REST API and the CLI. Only a hash is stored."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # None: never
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    PREFIX = "assay_"

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        return "expired" if self.is_expired else "active"

    @classmethod
    def issue(cls, *, user: User, name: str, expires_at=None) -> tuple["ApiToken", str]:
        """Create a token and return it with its clear-text key (shown once, never stored)."""
        key = cls.PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, prefix=key[: len(cls.PREFIX) + 4], key_hash=cls.hash_key(key),
            expires_at=expires_at,
        )
        return token, key
