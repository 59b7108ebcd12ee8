"""The workloads: which request each connection sends next, and what counts as success.

The same workload drives the platform and the ceiling app, so both answer the same URLs.
Every connection has its own state (its own random stream, and for updates its own tasks
and their current ``ETag``), so connections never contend for the same row and an
``If-Match`` never fails because of another connection of the benchmark.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class ConnectionState(ABC):
    """What one connection sends; subclasses override ``next_request`` (and maybe more)."""

    expected_status = 200

    def __init__(self, context: dict[str, Any], index: int, connections: int) -> None:
        self.context = context
        self.index = index
        self.connections = connections
        self.random = random.Random(1_000_003 * (index + 1))
        self.auth = {"Authorization": f"Bearer {context.get('token', '')}"}

    def preparation(self) -> Iterator[Request]:
        """Requests sent before the clock starts (not measured)."""
        return iter(())

    def prepared(self, request: Request, response: Response) -> bool:
        return response.status == 200

    @abstractmethod
    def next_request(self) -> Request:
        """The next request this connection sends."""

    def handle(self, request: Request, response: Response) -> bool:
        """Record what the answer teaches; return whether it is a success."""
        return response.status == self.expected_status


class Me(ConnectionState):
    def next_request(self) -> Request:
        return Request("GET", "/v1/users/me", self.auth)


class Login(ConnectionState):
    def __init__(self, context: dict[str, Any], index: int, connections: int) -> None:
        super().__init__(context, index, connections)
        self.body = json.dumps(
            {"tenant": context["tenant"], "login": context["login"],
             "password": context["password"]}
        ).encode()

    def next_request(self) -> Request:
        return Request("POST", "/v1/auth/login", {}, self.body)


class GetTask(ConnectionState):
    def next_request(self) -> Request:
        task_id = self.random.choice(self.context["task_ids"])
        return Request("GET", f"/v1/tasks/{task_id}", self.auth)


class ListTasks(ConnectionState):
    def next_request(self) -> Request:
        project = self.random.choice(self.context["project_ids"])
        status = self.context.get("list_status", "TODO")
        return Request(
            "GET", f"/v1/projects/{project}/tasks?status={status}&limit=50", self.auth
        )


class SearchTasks(ConnectionState):
    def next_request(self) -> Request:
        project = self.random.choice(self.context["project_ids"])
        words = self.context["search_words"]
        query = self.random.choice(words)
        if self.random.random() < 0.5:
            query = f"{query} {self.random.choice(words)}"
        return Request(
            "GET", f"/v1/projects/{project}/tasks?q={quote(query)}&limit=50", self.auth
        )


class CreateTask(ConnectionState):
    expected_status = 201
    PRIORITIES = ("LOW", "MEDIUM", "HIGH", "URGENT")

    def __init__(self, context: dict[str, Any], index: int, connections: int) -> None:
        super().__init__(context, index, connections)
        self.counter = 0

    def next_request(self) -> Request:
        self.counter += 1
        words = self.context["search_words"]
        project = self.random.choice(self.context["project_ids"])
        body = {
            "title": f"bench c{self.index}-{self.counter} {self.random.choice(words)}",
            "description": " ".join(self.random.choice(words) for _ in range(8)),
            "priority": self.random.choice(self.PRIORITIES),
            "labels": ["bench", self.random.choice(words)],
            "assigneeId": self.context["assignee_id"],
        }
        return Request(
            "POST", f"/v1/projects/{project}/tasks", self.auth, json.dumps(body).encode()
        )


class UpdateStatus(ConnectionState):
    """PATCH the status of this connection's own tasks, always with the current ETag."""

    CYCLE = ("IN_PROGRESS", "IN_REVIEW", "DONE", "TODO")

    def __init__(self, context: dict[str, Any], index: int, connections: int) -> None:
        super().__init__(context, index, connections)
        ids: list[str] = context["update_task_ids"][index::connections]
        if not ids:
            raise ValueError("not enough update_task_ids for the connections")
        self.ids = ids
        self.etags: dict[str, str] = {}
        self.turn = 0

    def preparation(self) -> Iterator[Request]:
        for task_id in self.ids:
            yield Request("GET", f"/v1/tasks/{task_id}", self.auth)

    def prepared(self, request: Request, response: Response) -> bool:
        etag = response.headers.get("etag")
        if response.status != 200 or not etag:
            return False
        self.etags[request.path.rsplit("/", 1)[1]] = etag
        return True

    def next_request(self) -> Request:
        task_id = self.ids[self.turn % len(self.ids)]
        status = self.CYCLE[(self.turn // len(self.ids)) % len(self.CYCLE)]
        self.turn += 1
        headers = {**self.auth, "If-Match": self.etags[task_id]}
        return Request(
            "PATCH", f"/v1/tasks/{task_id}", headers, json.dumps({"status": status}).encode()
        )

    def handle(self, request: Request, response: Response) -> bool:
        etag = response.headers.get("etag")
        if etag:
            self.etags[request.path.rsplit("/", 1)[1]] = etag
        return response.status == 200 and bool(etag)


STATES: dict[str, Callable[[dict[str, Any], int, int], ConnectionState]] = {
    "get_task": GetTask,
    "list_tasks": ListTasks,
    "search_tasks": SearchTasks,
    "create_task": CreateTask,
    "update_status": UpdateStatus,
    "login": Login,
    "me": Me,
}

# What a workload is, for the targets: reads ≥ 60 % of the ceiling, writes ≥ 50 %.
KINDS = {
    "get_task": "read",
    "list_tasks": "read",
    "search_tasks": "read",
    "me": "read",
    "create_task": "write",
    "update_status": "write",
    "login": "login",
}
TASK_WORKLOADS = ("get_task", "list_tasks", "search_tasks", "create_task", "update_status")
IDENTITY_WORKLOADS = ("me", "login")


class Workload:
    def __init__(self, name: str, context: dict[str, Any]) -> None:
        if name not in STATES:
            raise ValueError(f"unknown workload {name!r}; choose from {sorted(STATES)}")
        self.name = name
        self.context = context
        self.connections = int(context.get("connections", 1))
        self._states: dict[int, ConnectionState] = {}

    def connection(self, index: int) -> ConnectionState:
        if index not in self._states:
            self._states[index] = STATES[self.name](self.context, index, self.connections)
        return self._states[index]

    def probe(self) -> Request:
        return Request("GET", "/healthz")


def build_workload(name: str, context: dict[str, Any]) -> Workload:
    return Workload(name, context)
