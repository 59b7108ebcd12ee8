"""The events projects publish: its public contract with the rest of the platform.

Every event's subject is the project (``subject_type="project"``). Data:

- ``project.created``: ``{name, ownerId, status, startDate, endDate}``; the owner's
  membership is part of the creation (no separate ``member_added``).
- ``project.updated``: ``{changes: {field: [old, new]}}`` with camelCase field names.
- ``project.deleted``: ``{name, memberIds}``; the project's tasks go with it (tasks
  consumes this).
- ``project.member_added``: ``{userId, role, projectName}``.
- ``project.member_updated``: ``{userId, changes: {role: [old, new]}}``.
- ``project.member_removed``: ``{userId, role}``.
"""

from __future__ import annotations

PROJECT_CREATED = "project.created"
PROJECT_UPDATED = "project.updated"
PROJECT_DELETED = "project.deleted"
MEMBER_ADDED = "project.member_added"
MEMBER_UPDATED = "project.member_updated"
MEMBER_REMOVED = "project.member_removed"
AUTHZ_DENIED = "authz.denied"
