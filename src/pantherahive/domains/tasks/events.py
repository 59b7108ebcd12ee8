"""The events tasks publishes: its public contract with the rest of the platform.

Every event's subject is the task (``subject_type="task"``) and its data carries
``projectId``, except ``task.project_tasks_deleted``. Besides that:

- ``task.created``: ``{title, status, priority, assigneeId, reporterId, dueDate, labels,
  dependsOn}``.
- ``task.updated``: ``{changes: {field: [old, new]}}`` with camelCase field names.
- ``task.assigned``: ``{assigneeId, previousAssigneeId}`` (either may be null).
- ``task.status_changed``: ``{from, to}``.
- ``task.deleted``: ``{title}``.
- ``task.dependency_added`` / ``task.dependency_removed``: ``{dependsOnId}``.
- ``task.project_tasks_deleted``: subject the project, ``{count}``; derived (not audited)
  from ``project.deleted``, whose consumer deleted the project's tasks.
- ``authz.denied``: ``{action, role}`` when a caller who can see the task is refused.
"""

from __future__ import annotations

TASK_CREATED = "task.created"
TASK_UPDATED = "task.updated"
TASK_ASSIGNED = "task.assigned"
TASK_STATUS_CHANGED = "task.status_changed"
TASK_DELETED = "task.deleted"
PROJECT_TASKS_DELETED = "task.project_tasks_deleted"
DEPENDENCY_ADDED = "task.dependency_added"
DEPENDENCY_REMOVED = "task.dependency_removed"
AUTHZ_DENIED = "authz.denied"
