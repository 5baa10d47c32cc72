import factory

from accounts.models import Level, Role, Team, User
from datastores.models import Container, Datastore
from runs.models import ActorKind, Run, Via


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests-1")
    role = Role.MEMBER


class DatastoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Datastore

    name = factory.Sequence(lambda n: f"store{n}")
    source_url = "sqlite:///:memory:"


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    name = factory.Sequence(lambda n: f"team{n}")
    level = Level.VIEWER


class ContainerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Container

    datastore = factory.SubFactory(DatastoreFactory)
    name = factory.Sequence(lambda n: f"table{n}")
    kind = "table"


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Run

    operation = "scan"
    datastore = factory.SubFactory(DatastoreFactory)
    triggered_by_kind = ActorKind.USER
    triggered_via = Via.WEB
