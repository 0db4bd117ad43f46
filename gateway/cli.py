"""The `gateway` command."""

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.settings import Settings, settings_problems
from gateway.settings_checks import (
    known_variables,
    serve_problems,
    unknown_variables,
    variable_names,
)
from gateway.settings_files import FILE_SETTINGS, SettingsFileError

SCHEMA_FILE = "schema.graphql"


def _refused(command: str, problems: list[str]) -> bool:
    """Prints each problem as one line naming its setting; true when there is any."""
    for line in problems:
        print(f"gateway {command}: invalid setting: {line}", file=sys.stderr)
    return bool(problems)


def _serve(settings: Settings, host: str, port: int, workers: int) -> int:
    from gateway.startup import file_problems
    from gateway.supervisor import exec_supervisor, serve

    if _refused("serve", serve_problems(settings) + file_problems(settings)):
        return 2
    internal = settings.internal_port
    if internal == port:
        print(
            f"gateway: GATEWAY_INTERNAL_PORT is --port ({port}): give it its own", file=sys.stderr
        )
        return 2
    from gateway.startup import log_start

    log_start(
        "gateway serve", settings, host=host, port=port, internal_port=internal, workers=workers
    )
    if workers > 1:  # the supervisor needs none of our imports: it replaces this process
        exec_supervisor(
            host,
            port,
            workers,
            settings.effective_log_format,
            settings.log_level,
            internal,
            settings.effective_drain_s,
        )
    return serve(host, port, workers, internal, settings.effective_drain_s)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings()  # checked here: a bad setting fails before any worker starts
    return _serve(settings, args.host, args.port, args.workers or settings.workers)


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


async def _demo_users(settings: Settings) -> tuple[int, int]:
    from loaders.engines import Upstream
    from loaders.programs import dashboard_users
    from resolvers.caller import ADMIN, DIRECTOR

    upstream = Upstream(settings.upstream_urls())
    try:
        rows = await dashboard_users(upstream)
    finally:
        await upstream.dispose()
    admin = min(r.id for r in rows if r.role == ADMIN)
    director = min(r.id for r in rows if r.role == DIRECTOR)
    return director, admin


def cmd_run(args: argparse.Namespace) -> int:
    """Development: seed the embedded database when missing, print sign-in links, serve."""
    from gateway.auth import mint_token

    settings = Settings()
    if _refused("run", serve_problems(settings)):
        return 2
    path = _sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"Seeding the demo database at {path} …", flush=True)
        _run_seed(settings, "demo", 7, settings.database_url)
    director, admin = asyncio.run(_demo_users(settings))
    ttl_s = 12 * 3600
    director_token = mint_token(settings, director, "director", ttl_s)
    admin_token = mint_token(settings, admin, "admin", ttl_s)
    base = f"http://{args.host}:{args.port}/graphql"
    # The token rides in the fragment: the browser never sends it in a request line, so it
    # reaches no access log; the page moves it into its Authorization header.
    print(f"\nThe dashboard page, signed in as the demo director (user {director}):")
    print(f"  http://{args.host}:{args.port}/dashboard#token={director_token}")
    print(f"GraphiQL, signed in as the demo director (user {director}):")
    print(f"  {base}#token={director_token}")
    print(f"as the admin (user {admin}):")
    print(f"  {base}#token={admin_token}")
    print("Other clients send the token as `Authorization: Bearer <token>`.\n", flush=True)
    return _serve(settings, args.host, args.port, 1)


def _run_seed(
    settings: Settings, scale: str, seed: int, database_url: str | None, checksum: bool = True
) -> None:
    from loaders.demo import seed as run_seed

    urls = settings.upstream_urls()
    if database_url:
        urls = dict.fromkeys(urls, database_url)
    for url in set(urls.values()):
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(
        run_seed(urls, scale=scale, seed=seed, progress=True, with_checksum=checksum)
    )
    total = sum(report.rows_by_table.values())
    print(
        f"seeded scale={report.scale} seed={report.seed}: {total:,} rows in "
        f"{report.seconds:.1f} s; admin {report.admin_id}, "
        f"{len(report.director_ids)} directors; "
        + (f"checksum {report.checksum[:16]}" if report.checksum else "checksum skipped")
    )


def cmd_seed(args: argparse.Namespace) -> int:
    _run_seed(Settings(), args.scale, args.seed, args.database_url, not args.no_checksum)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.auth import mint_token, parse_duration

    settings = Settings()
    try:
        ttl_s = parse_duration(args.ttl)
        if ttl_s > settings.jwt_max_lifetime_s:
            raise ValueError(
                f"--ttl {args.ttl} is longer than GATEWAY_JWT_MAX_LIFETIME_S "
                f"({settings.jwt_max_lifetime_s:.0f} s): the gateway would refuse the token"
            )
    except ValueError as exc:
        print(f"gateway token: {exc}", file=sys.stderr)
        return 2
    role = args.role
    if role is None:
        role = asyncio.run(_user_role(settings, args.user_id))
        if role not in ("admin", "director"):
            print(
                f"gateway token: user {args.user_id} is not a director or admin "
                "(pass --role to mint anyway)",
                file=sys.stderr,
            )
            return 2
    print(mint_token(settings, args.user_id, role, ttl_s))
    return 0


async def _user_role(settings: Settings, user_id: int) -> str | None:
    from loaders.engines import Upstream
    from loaders.programs import user_role

    upstream = Upstream(settings.upstream_urls())
    try:
        return await user_role(upstream, user_id)
    finally:
        await upstream.dispose()


def schema_sdl() -> str:
    from resolvers.schema import build_schema

    return build_schema().as_str() + "\n"


def cmd_export_schema(args: argparse.Namespace) -> int:
    sdl = schema_sdl()
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        Path(args.output).write_text(sdl)
        print(f"wrote {args.output}")
    return 0


def cmd_manifest_build(args: argparse.Namespace) -> int:
    import orjson

    from gateway.documents.dashboard import build_manifest, dashboard_operations

    manifest = orjson.dumps(build_manifest(dashboard_operations()), option=orjson.OPT_INDENT_2)
    if args.output == "-":
        sys.stdout.write(manifest.decode() + "\n")
    else:
        Path(args.output).write_bytes(manifest + b"\n")
        print(f"wrote {args.output}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.check:
        from workers.heartbeat import check

        fresh, report = check(settings.worker_heartbeat_file, settings.worker_heartbeat_max_age_s)
        print(report, file=sys.stdout if fresh else sys.stderr)
        return 0 if fresh else 1

    from gateway.startup import file_problems
    from workers.worker import make_worker

    if _refused("worker", file_problems(settings)):
        return 2
    try:
        worker = make_worker(settings, burst=args.burst)
    except ValueError as exc:
        print(f"gateway worker: {exc}", file=sys.stderr)
        return 2
    from gateway.startup import log_start

    log_start("gateway worker", settings, metrics_port=args.metrics_port)
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        from gateway.metrics import registry_for_scrape

        start_http_server(args.metrics_port, addr=args.metrics_host, registry=registry_for_scrape())
    worker.run()
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.sync:
        return asyncio.run(_refresh_sync(settings, args))
    if not settings.redis_url:
        print("gateway refresh: without --sync this needs GATEWAY_REDIS_URL", file=sys.stderr)
        return 2
    return asyncio.run(_refresh_enqueue(settings, args))


async def _refresh_enqueue(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.refresh.requests import QueueRefresher
    from gateway.services import make_redis
    from resolvers.caller import Caller

    redis = make_redis(settings.queue_url or "")
    try:
        queue = QueueRefresher(redis)
        if args.all:
            from gateway.cache.keys import JOB_REFRESH_ALL
            from gateway.refresh.lease import free_abandoned_job

            if await queue.refresh_all():
                print("enqueued refresh_all")
            elif await free_abandoned_job(redis, JOB_REFRESH_ALL):
                print("refresh_all was abandoned (its worker died): queued again")
            else:
                print("refresh_all is already queued")
        elif args.director_id is not None:
            await queue.refresh_director(Caller(args.director_id, args.role))
            print(f"enqueued refresh_director {args.director_id}")
        else:
            await queue.refresh_cohorts([args.cohort_id])
            print(f"enqueued refresh_cohort {args.cohort_id}")
    finally:
        await redis.aclose(close_connection_pool=True)
    return 0


async def _refresh_sync(settings: Settings, args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from gateway.refresh.cycle import refresh_cycle
    from gateway.services import REFRESH_COMMAND_TIMEOUT_S, Services
    from loaders.programs import all_cohort_ids
    from loaders.registry import Loaders
    from resolvers.caller import Caller
    from resolvers.subtrees import scope_cohort_ids

    services = Services.build(settings, command_timeout_s=REFRESH_COMMAND_TIMEOUT_S)
    refresh = services.refresh
    assert refresh is not None
    started = time.perf_counter()
    try:
        if args.all:
            total = len(await all_cohort_ids(services.upstream))
            with tqdm(total=total, unit="cohort", file=sys.stderr) as bar:
                report, answers = await refresh_cycle(services, progress=bar)
            directors, cohorts = report.directors, report.cohorts
            print(
                f"prewarmed {answers.stored} answers for {answers.callers} callers "
                f"in {answers.seconds:.2f} s; rebuilt {answers.rebuilt} other answers, "
                f"dropped {answers.dropped} ({answers.replaced.seconds:.2f} s on them)"
            )
        elif args.director_id is not None:
            caller = Caller(args.director_id, args.role)
            await refresh.refresh_director(caller, services.clock())
            scope = await scope_cohort_ids(Loaders(services.upstream), caller)
            directors, cohorts = 1, len(scope)
        else:
            now = services.clock()
            done = await refresh.refresh_cohort(args.cohort_id, now)
            for caller in done.later:
                await refresh.refresh_director(caller, now)
            directors, cohorts = len(done.directors), 1
    finally:
        await services.close()
    print(
        f"refreshed {directors} directors, {cohorts} cohorts in "
        f"{time.perf_counter() - started:.2f} s"
    )
    return 0


def cmd_settings_doc(args: argparse.Namespace) -> int:
    from gateway.settings_doc import render_env_example, update_operations_doc

    doc = Path(args.operations_doc)
    doc.write_text(update_operations_doc(doc))
    Path(args.env_example).write_text(render_env_example())
    print(f"wrote the settings table in {doc} and {args.env_example}")
    return 0


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in --help, unless it has none or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or "").lower():
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsShown)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from gateway.version import VERSION

    parser = _Parser(prog="gateway", description="Director dashboard gateway.")
    parser.add_argument("--version", action="version", version=f"gateway {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="Serve the GraphQL API with uvicorn.")
    p.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    p.add_argument("--port", type=int, default=8000, help="TCP port.")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Worker processes (default: GATEWAY_WORKERS, which defaults to "
        f"{Settings.model_fields['workers'].default}).",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "run",
        help="Development: seed the demo database if missing, print a GraphiQL link, serve.",
    )
    p.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    p.add_argument("--port", type=int, default=8000, help="TCP port.")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "seed", help="Write a deterministic synthetic dataset into the upstream tables."
    )
    p.add_argument(
        "--scale",
        choices=["demo", "bench", "large"],
        default="demo",
        help="Dataset size: demo (60 cohorts), bench (2,500) or large (25,000, on PostgreSQL).",
    )
    p.add_argument(
        "--no-checksum",
        action="store_true",
        help="Do not read every row back for the checksum (minutes at large scale).",
    )
    p.add_argument("--seed", type=int, default=7, help="Random seed (same seed, same rows).")
    p.add_argument(
        "--database-url", default=None, help="One URL for every module (default: settings)."
    )
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("token", help="Mint a bearer token from the configured secret or key.")
    p.add_argument("--user-id", type=int, required=True)
    p.add_argument("--ttl", default="1h", help="Lifetime: 90s, 15m, 1h, 7d (default 1h).")
    p.add_argument(
        "--role", choices=["director", "admin"], default=None, help="Default: the user's role."
    )
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("worker", help="Run an arq worker: refresh jobs and the refresh cycle.")
    p.add_argument("--burst", action="store_true", help="Exit when the queue is empty.")
    p.add_argument(
        "--check",
        action="store_true",
        help="Liveness probe: exit 0 if this worker's heartbeat is fresh, 1 otherwise.",
    )
    p.add_argument(
        "--metrics-port", type=int, default=None, help="Serve Prometheus metrics on this port."
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="Address of --metrics-port (internal only)."
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("refresh", help="Refresh the cache: enqueue jobs, or compute with --sync.")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--all", action="store_true", help="Every cohort and director.")
    target.add_argument("--director-id", type=int)
    target.add_argument("--cohort-id", type=int)
    p.add_argument(
        "--role", choices=["director", "admin"], default="director", help="With --director-id."
    )
    p.add_argument("--sync", action="store_true", help="Compute in this process and report.")
    p.set_defaults(func=cmd_refresh)

    p = sub.add_parser("settings-doc", help="Regenerate the settings reference from the code.")
    p.add_argument("--operations-doc", default="docs/operations.md")
    p.add_argument("--env-example", default=".env.example")
    p.set_defaults(func=cmd_settings_doc)

    p = sub.add_parser("export-schema", help="Print the SDL of the schema.")
    p.add_argument(
        "--output", default=SCHEMA_FILE, help=f"File, or - for stdout (default {SCHEMA_FILE})."
    )
    p.set_defaults(func=cmd_export_schema)

    p = sub.add_parser("manifest", help="Trusted documents (persisted queries).")
    manifest = p.add_subparsers(dest="manifest_command", required=True)
    p = manifest.add_parser(
        "build",
        help="Write the apollo-persisted-query-manifest of gateway/documents/operations/*.graphql.",
    )
    p.add_argument(
        "--output",
        default="persisted-query-manifest.json",
        help="File, or - for stdout (default persisted-query-manifest.json).",
    )
    p.set_defaults(func=cmd_manifest_build)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gateway.logs import configure

    name = f"gateway {args.command}"
    try:
        settings = Settings()
    except ValidationError as exc:  # one line per problem, not a traceback
        for line in settings_problems(exc):
            print(f"{name}: invalid setting: {line}", file=sys.stderr)
        return 2
    except SettingsFileError as exc:
        print(f"{name}: invalid setting: {exc}", file=sys.stderr)
        return 2
    known = known_variables(Settings.model_fields, FILE_SETTINGS)
    unknown = unknown_variables(variable_names(os.environ, ".env"), known)
    for line in unknown:  # refused in production, where a typo may change what runs
        kind = "invalid setting" if settings.is_production else "warning"
        print(f"{name}: {kind}: {line}", file=sys.stderr)
    if unknown and settings.is_production:
        return 2
    configure(settings.effective_log_format, settings.log_level)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
