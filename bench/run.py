"""The benchmark run: provision PostgreSQL, start the platform and the ceiling, seed, drive
every workload against both from a separate load-generator process, write the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench import db as bench_db
from bench import processes, report, seed
from bench.workloads import IDENTITY_WORKLOADS, TASK_WORKLOADS

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKLOADS = (*TASK_WORKLOADS, *IDENTITY_WORKLOADS)
# Argon2id parameters of the platform (production defaults; the ceiling uses the same).
TOKEN_RENEWAL_S = 8 * 60
STALLED_S = 15.0
ARGON2 = {"time_cost": 3, "memory_kib": 65536, "parallelism": 4}


def log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the platform's hot paths against a minimal ASGI+asyncpg "
        "'ceiling' app on the same PostgreSQL, from a separate load-generator process.",
    )
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per workload and server (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="unmeasured seconds before each measurement (default 2)")
    parser.add_argument("--connections", type=int, default=32,
                        help="concurrent keep-alive connections (default 32)")
    parser.add_argument("--tasks", type=int, default=100_000,
                        help="tasks seeded across the projects (default 100000)")
    parser.add_argument("--projects", type=int, default=100, help="projects (default 100)")
    parser.add_argument("--scale", default="10000,100000",
                        help="task counts of the single-project list scaling check, comma "
                        "separated, or 'none' (default 10000,100000)")
    parser.add_argument("--full", action="store_true",
                        help="add 1,000,000 tasks in one project to the scaling check")
    parser.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                        help=f"comma separated subset of {','.join(DEFAULT_WORKLOADS)}")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="at most this many seconds to wait, before each run, for the "
                        "servers' background work (event consumers) to drain (default 15)")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="at most this many seconds to wait for the platform's event "
                        "consumers to work off the previous run's events (default 300)")
    parser.add_argument("--platform-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the platform process, for what-if runs "
                        "(e.g. PANTHERAHIVE_DB_POOL_SIZE=20); repeatable, recorded in the report")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling app")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (default 1)")
    parser.add_argument("--profile", metavar="WORKLOAD", default=None,
                        help="after the run, profile the platform with py-spy during one "
                        "more run of WORKLOAD (needs `pip install py-spy`)")
    parser.add_argument("--output-dir", type=Path, default=ROOT / "bench" / "results",
                        help="where the JSON and Markdown results go")
    parser.add_argument("--keep", action="store_true",
                        help="keep the database created on DATABASE_URL's server")
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(DEFAULT_WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    sizes = [] if args.scale.strip() in ("", "none") else [
        int(s) for s in args.scale.split(",") if s.strip()
    ]
    if args.full and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    args.scale_sizes = sorted(sizes)
    try:
        args.platform_env = dict(item.split("=", 1) for item in args.platform_env)
    except ValueError:
        parser.error("--platform-env takes NAME=VALUE")
    return args


class Runner:
    def __init__(self, args: argparse.Namespace, work_dir: Path) -> None:
        self.args = args
        self.work_dir = work_dir
        self.loop = asyncio.new_event_loop()
        self.results: list[dict[str, Any]] = []
        self.scaling: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.phases: dict[str, float] = {}
        self.profile: dict[str, Any] | None = None
        self.counter = seed.Counter()
        self.load_before: list[float] = []
        self._token: tuple[float, str] | None = None
        self.url = ""

    def drain_events(self) -> float | None:
        """Wait until the platform's event consumers have caught up with the outbox.

        With the embedded bus the consumers (audit, notifications…) run inside the API
        process; a write workload leaves them a backlog that would otherwise steal the CPU
        from the next measurement. Returns the seconds waited (None: no bus tables)."""
        if not self.url:
            return None

        async def lag() -> int | None:
            conn = await bench_db.connect(self.url)
            # Consumers read in commit order, (xid, position), not in position order: a
            # position-only difference reports rows committed out of order as "behind".
            try:
                behind = await conn.fetchval(
                    "SELECT max(bus.outbox_pending(last_xid, last_position)) "
                    "FROM bus.consumer_offsets")
            except Exception:  # an older schema without consumer offsets
                return None
            finally:
                await conn.close()
            return None if behind is None else int(behind)

        started = progress_at = time.monotonic()
        best: int | None = None
        while time.monotonic() - started < self.args.drain_timeout:
            behind = self.run_async(lag())
            if behind is None:
                return None
            if behind == 0:
                return time.monotonic() - started
            if best is None or behind < best:
                best, progress_at = behind, time.monotonic()
            elif time.monotonic() - progress_at > STALLED_S:
                break  # a consumer that does not move (parked, or skips its offset)
            time.sleep(0.5)
        self.notes.append(
            f"The event consumers were still {best} events behind after "
            f"{time.monotonic() - started:.0f}s; the next measurement shared the CPU with them."
        )
        return time.monotonic() - started

    def token(self, base_url: str, tenant: seed.Tenant) -> str:
        """An access token of the benchmark's caller, renewed well before its 15 minutes."""
        if self._token is None or time.monotonic() - self._token[0] > TOKEN_RENEWAL_S:
            self._token = (time.monotonic(), seed.login(base_url, tenant))
        return self._token[1]

    def run_async(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    # ---- the load generator ---------------------------------------------------------------
    def drive(
        self, server: processes.Server, workload: str, context: dict[str, Any],
        watch: list[int | None], duration: float | None = None,
    ) -> dict[str, Any]:
        duration = duration if duration is not None else self.args.duration
        spec = {
            "host": "127.0.0.1",
            "port": server.port,
            "connections": self.args.connections,
            "duration": duration,
            "warmup": self.args.warmup,
            "workload": workload,
            "context": {**context, "connections": self.args.connections},
        }
        spec_path = self.work_dir / f"spec-{workload}-{server.name}.json"
        spec_path.write_text(json.dumps(spec))
        settle = time.monotonic()
        drained = self.drain_events()
        processes.wait_idle(watch, timeout=self.args.settle)
        settled = time.monotonic() - settle
        if drained is not None and drained > 1 and self.results:
            log(f"    (event backlog of the previous run drained in {drained:.0f}s)")
        cpu_before = [processes.tree_cpu_seconds(pid) for pid in watch]
        started = time.monotonic()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        completed = subprocess.run(
            [sys.executable, "-m", "bench.loadgen", str(spec_path)],
            capture_output=True, text=True, env=env, cwd=ROOT,
            timeout=self.args.warmup + duration + 120, check=False,
        )
        wall = time.monotonic() - started
        if completed.returncode != 0:
            raise RuntimeError(
                f"load generator failed for {workload} on {server.name}:\n{completed.stderr}"
            )
        result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
        cpu_after = [processes.tree_cpu_seconds(pid) for pid in watch]
        # A process tree loses the CPU time of children that exited meanwhile (a pool
        # closing PostgreSQL backends), so a negative difference means "unknown".
        used = [
            b - a if a is not None and b is not None and b >= a else None
            for a, b in zip(cpu_before, cpu_after, strict=True)
        ]
        total = max(int(result.get("requests_total", 0)), 1)
        result["server"] = server.name
        result["cpu_cores"] = {
            "server": None if used[0] is None else round(used[0] / wall, 2),
            "postgres": None if used[-1] is None else round(used[-1] / wall, 2),
        }
        # CPU time per answered request: the cost that does not depend on how busy the
        # machine is (a neighbour steals wall time, not CPU time).
        result["cpu_ms_per_request"] = {
            "server": None if used[0] is None else round(used[0] * 1000 / total, 3),
            "postgres": None if used[-1] is None else round(used[-1] * 1000 / total, 3),
        }
        result["settle_s"] = round(settled, 2)
        result["backlog_drain_before_s"] = None if drained is None else round(drained, 1)
        result["wall_s"] = round(wall, 2)
        if result["errors"]:
            tail = server.log_tail(12)
            if tail:
                self.notes.append(f"{server.name} log after {workload}:\n```\n{tail}\n```")
        return result

    # ---- the run --------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        args = self.args
        t0 = time.monotonic()
        facts = report.machine()
        self.load_before = facts["load_average"]
        log(f"==> Machine: {os.cpu_count()} x {facts['cpu_model']}, load average "
            f"{' '.join(map(str, facts['load_average']))}")
        if facts["load_average"][0] > 0.5 * (os.cpu_count() or 1):
            self.notes.append(
                f"The machine was busy when the run started (load average "
                f"{facts['load_average']}): other processes compete for the CPU, so "
                "absolute numbers are low and noisy; ratios suffer less."
            )
        with bench_db.provision(
            os.environ.get("DATABASE_URL"), self.work_dir, keep=args.keep, run=self.run_async
        ) as (url, where):
            log(f"==> PostgreSQL: {where}")
            self.url = url
            from pantherahive.infra.db.migrate import upgrade

            upgrade(url)
            pg_facts = self.run_async(bench_db.server_facts(url))
            log(f"    PostgreSQL {pg_facts['version']}; migrations applied")
            pg_pid = None if os.environ.get("DATABASE_URL") else bench_db.postmaster_pid(
                self.work_dir)
            self.phases["database_s"] = round(time.monotonic() - t0, 1)
            jwt_secret = secrets.token_urlsafe(36)
            platform = processes.start_platform(
                database_url=bench_db.app_login(url, self.run_async), jwt_secret=jwt_secret,
                work_dir=self.work_dir, workers=args.workers, extra_env=args.platform_env,
            )
            ceiling: processes.Server | None = None
            try:
                platform.wait_ready("/readyz")
                log(f"==> Platform up on {platform.base_url} (pid {platform.pid})")
                has_tasks = self._serves_tasks(platform)
                workloads = [w for w in args.workloads if has_tasks or w not in TASK_WORKLOADS]
                if not has_tasks:
                    self.notes.append(
                        "The platform does not serve the tasks API yet: task workloads and "
                        "the scaling check were skipped."
                    )
                    log("    (no tasks API yet: task workloads skipped)")
                t1 = time.monotonic()
                tenant = seed.seed_identity(platform.base_url)
                log(f"==> Seeded tenant {tenant.slug} through the API (admin, owner, editor)")
                context = self._seed(url, tenant, has_tasks and bool(
                    set(workloads) & set(TASK_WORKLOADS) or args.scale_sizes))
                self.phases["seed_s"] = round(time.monotonic() - t1, 1)
                if not args.no_ceiling:
                    ceiling = processes.start_ceiling(
                        database_url=url, work_dir=self.work_dir, workers=args.workers,
                        env={
                            "BENCH_CEILING_TENANT_ID": tenant.id,
                            "BENCH_CEILING_USER_ID": tenant.editor_id,
                            "BENCH_CEILING_JWT_SECRET": jwt_secret,
                            "BENCH_CEILING_POOL_SIZE": "20",
                            "BENCH_CEILING_ARGON2_TIME_COST": str(ARGON2["time_cost"]),
                            "BENCH_CEILING_ARGON2_MEMORY_KIB": str(ARGON2["memory_kib"]),
                            "BENCH_CEILING_ARGON2_PARALLELISM": str(ARGON2["parallelism"]),
                        },
                    )
                    ceiling.wait_ready("/healthz")
                    log(f"==> Ceiling app up on {ceiling.base_url} (pid {ceiling.pid})")
                t2 = time.monotonic()
                servers = [platform] + ([ceiling] if ceiling else [])
                for workload in workloads:
                    for server in servers:
                        context["token"] = self.token(platform.base_url, tenant)
                        watch = [server.pid, pg_pid]
                        log(f"==> {workload} on {server.name}: {args.connections} connections, "
                            f"{args.warmup:g}s warm-up + {args.duration:g}s")
                        result = self.drive(server, workload, context, watch)
                        self.results.append(result)
                        log("    " + report.one_line(result))
                self.phases["workloads_s"] = round(time.monotonic() - t2, 1)
                if has_tasks and args.scale_sizes and "list_tasks" in args.workloads:
                    t3 = time.monotonic()
                    self._scaling(url, tenant, context, servers, pg_pid)
                    self.phases["scaling_s"] = round(time.monotonic() - t3, 1)
                if args.profile:
                    self._profile(platform, args.profile, tenant, context, pg_pid)
            finally:
                for server in (platform, ceiling):
                    if server is not None:
                        server.stop()
            self.phases["total_s"] = round(time.monotonic() - t0, 1)
            return report.document(
                args=args, results=self.results, scaling=self.scaling, notes=self.notes,
                postgres={**pg_facts, "where": where}, phases=self.phases,
                argon2=ARGON2, profile=self.profile,
                seeded={"tasks": args.tasks if has_tasks else 0, "projects": args.projects},
                load_before=self.load_before,
            )

    def _serves_tasks(self, platform: processes.Server) -> bool:
        schema = httpx.get(platform.base_url + "/openapi.json", timeout=30).json()
        paths = " ".join(schema.get("paths", {}))
        return all(
            re.search(pattern, paths)
            for pattern in (r"/v1/tasks/\{\w+\}(\s|$)", r"/v1/projects/\{\w+\}/tasks(\s|$)")
        )

    def _seed(self, url: str, tenant: seed.Tenant, with_tasks: bool) -> dict[str, Any]:
        args = self.args
        context: dict[str, Any] = {
            "tenant": tenant.slug, "login": tenant.editor_login, "password": tenant.password,
            "assignee_id": tenant.editor_id, "search_words": list(seed.SEARCH_WORDS),
            "list_status": "TODO",
        }

        async def ceiling_outbox() -> None:
            conn = await bench_db.connect(url)
            try:
                await seed.create_ceiling_outbox(conn)
            finally:
                await conn.close()

        self.run_async(ceiling_outbox())
        if not with_tasks:
            return context

        async def work() -> None:
            conn = await bench_db.connect(url)
            try:
                tenant.project_ids = await seed.seed_projects(
                    conn, tenant, args.projects, "Bench project")
                log(f"==> Seeded {args.projects} projects (owner + editor members) with SQL")
                started = time.monotonic()
                await seed.seed_tasks(conn, tenant, tenant.project_ids, args.tasks,
                                      self.counter, log)
                log(f"    {args.tasks:,} tasks in {time.monotonic() - started:.1f}s; "
                    "VACUUM ANALYZE…")
                await seed.analyze(conn)
                context["project_ids"] = tenant.project_ids
                context["task_ids"] = await seed.random_task_ids(
                    conn, tenant, tenant.project_ids, 5000)
                context["update_task_ids"] = await seed.random_task_ids(
                    conn, tenant, tenant.project_ids[::-1], 8 * args.connections)
            finally:
                await conn.close()

        self.run_async(work())
        return context

    def _scaling(
        self, url: str, tenant: seed.Tenant, context: dict[str, Any],
        servers: list[processes.Server], pg_pid: int | None,
    ) -> None:
        for size in self.args.scale_sizes:
            async def work(size: int = size) -> str:
                conn = await bench_db.connect(url)
                try:
                    [project] = await seed.seed_projects(conn, tenant, 1, f"Scale {size}")
                    log(f"==> Scaling check: one project with {size:,} tasks")
                    await seed.seed_tasks(conn, tenant, [project], size, self.counter, log,
                                          batch=100_000)
                    await seed.analyze(conn)
                    return project
                finally:
                    await conn.close()

            project = self.run_async(work())
            tenant.scale_projects[size] = project
            total = self.counter.next - 1
            for server in servers:
                scoped = {**context, "project_ids": [project],
                          "token": self.token(servers[0].base_url, tenant)}
                log(f"==> list_tasks on {server.name}, project of {size:,} tasks "
                    f"(tenant: {total:,} seeded)")
                result = self.drive(server, "list_tasks", scoped, [server.pid, pg_pid])
                result["project_tasks"] = size
                result["tenant_tasks"] = total
                self.scaling.append(result)
                log("    " + report.one_line(result))

    def _profile(
        self, platform: processes.Server, workload: str, tenant: seed.Tenant,
        context: dict[str, Any], pg_pid: int | None,
    ) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            self.notes.append("--profile needs py-spy (`pip install py-spy`); skipped.")
            return
        out = self.work_dir / "profile.txt"
        seconds = self.args.warmup + self.args.duration
        log(f"==> Profiling the platform with py-spy during {workload} ({seconds:g}s)")
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(platform.pid), "--duration", str(int(seconds)),
             "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        context = {**context, "token": self.token(platform.base_url, tenant)}
        result = self.drive(platform, workload, context, [platform.pid, pg_pid])
        _, err = spy.communicate(timeout=120)
        if spy.returncode != 0 or not out.exists():
            self.notes.append(f"py-spy failed: {err.decode(errors='replace')[-300:]}")
            return
        self.profile = report.summarize_profile(out.read_text(), workload, result)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="ph-bench-"))
    try:
        runner = Runner(args, work_dir)
        document = runner.execute()
        paths = report.write(document, args.output_dir)
        print()
        print(report.markdown(document))
        log(f"==> Wrote {', '.join(str(p) for p in paths)}")
        return 0 if document["summary"]["errors"] == 0 else 1
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
