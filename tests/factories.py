import factory

from accounts.models import Level, Role, Team, User
from datastores.models import Container, Datastore
from runs.models import TERMINAL_STATUSES, ActorKind, Run, RunStatus, Via


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

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        """A terminal Run is built the way the system builds one: active first, then ended in
        one UPDATE (the database refuses to insert a Run that is already terminal)."""
        status = kwargs.get("status", RunStatus.QUEUED)
        if status not in TERMINAL_STATUSES:
            return super()._create(model_class, *args, **kwargs)
        run = super()._create(model_class, *args, **{
            **kwargs, "status": RunStatus.RUNNING, "finished_at": None,
        })
        Run.objects.filter(pk=run.pk).update(status=status, finished_at=kwargs.get("finished_at"))
        run.refresh_from_db()
        return run
