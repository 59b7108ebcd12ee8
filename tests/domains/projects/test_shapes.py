"""The project's shape is declared once: the schemas name the columns the service writes
and the event it publishes, so every name they carry must be a column."""

from __future__ import annotations

from pantherahive.domains.projects import events
from pantherahive.domains.projects.schemas import ProjectCreate, ProjectRead, ProjectUpdate
from pantherahive.domains.projects.tables import Project

COLUMNS = set(Project.__table__.c.keys())


def test_schemas_and_the_creation_event_name_only_columns() -> None:
    for declared in (ProjectCreate, ProjectUpdate, ProjectRead, events.ProjectCreated):
        assert set(declared.model_fields) <= COLUMNS, declared
