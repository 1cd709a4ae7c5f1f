"""The services' own entry point: what the image runs (no tools needed).

    python -m services run intake|router|sla-monitor|notifier|archive|desk   one service in this process
    python -m services topics                                   create the topics (idempotent)
    python -m services rebuild router|intake                    a service's Redis state from the topics

The `complaints` command of a development install (tools.cli) offers the same three
commands through the same functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from services.common.errors import ConfigError

# service name -> (app module, settings module, settings class)
SERVICES = {
    "intake": ("services.intake.app", "services.intake.settings", "IntakeSettings"),
    "router": ("services.router.app", "services.router.settings", "RouterSettings"),
    "sla-monitor": ("services.sla_monitor.app", "services.sla_monitor.settings", "SlaMonitorSettings"),
    "notifier": ("services.notifier.app", "services.notifier.settings", "NotifierSettings"),
    "archive": ("services.archive.app", "services.archive.settings", "ArchiveSettings"),
    "desk": ("services.desk.app", "services.desk.settings", "DeskSettings"),
}
REBUILDS = ("router", "intake", "archive")


def run(service: str) -> int:
    """Run one service in this process until it is stopped."""
    from services.common.runtime import serve

    app_mod, settings_mod, settings_cls = SERVICES[service]
    serve(importlib.import_module(app_mod).build,
          getattr(importlib.import_module(settings_mod), settings_cls))
    return 0


def topics() -> int:
    """Create the topics (idempotent); 1 when the broker cannot be reached."""
    from kafka.errors import KafkaError

    from services.common.kafka import ensure_topics
    from services.common.settings import CommonSettings, load_settings
    from services.common.transport import kafka_python_kwargs

    settings = load_settings(CommonSettings)
    try:
        created = ensure_topics(settings.bootstrap_list(), security=kafka_python_kwargs(settings))
    except KafkaError as exc:
        print(f"complaints: cannot create topics on {settings.kafka_bootstrap_servers}: {exc}",
              file=sys.stderr)
        return 1
    print(f"topics: created {len(created)} ({', '.join(created) or 'all existed'})")
    return 0


def rebuild(service: str) -> int:
    """Rebuild the router's or intake's Redis state, or the archive, from the topics; print the report."""
    from datetime import UTC, datetime, timedelta

    from services.common.settings import CommonSettings, load_settings
    from services.common.transport import sync_redis

    if service == "archive":
        from kafka.errors import KafkaError

        from services.archive.rebuild import rebuild as archive_rebuild
        from services.archive.settings import ArchiveSettings

        archive = load_settings(ArchiveSettings)
        try:
            print(archive_rebuild(archive))
        except KafkaError as exc:
            print(f"complaints rebuild archive: cannot read the topics from "
                  f"{archive.kafka_bootstrap_servers}: {exc}", file=sys.stderr)
            return 1
        return 0

    if service == "intake":
        from services.intake import rebuild as intake_rebuild
        from services.intake.adapters import CLAIM_TTL_SECONDS, TIMELINE_TTL_SECONDS

        common = load_settings(CommonSettings)
        client = sync_redis(common)  # TLS and the ACL user as the settings say
        try:
            print(intake_rebuild.rebuild(common.bootstrap_list(), client, prefix=common.redis_prefix,
                                         claim_ttl=timedelta(seconds=CLAIM_TTL_SECONDS),
                                         timeline_ttl=timedelta(seconds=TIMELINE_TTL_SECONDS)))
        finally:
            client.close()
        return 0

    from services.common.policy import load_policy
    from services.router.rebuild import rebuild as router_rebuild
    from services.router.settings import RouterSettings

    settings = load_settings(RouterSettings)
    policy = load_policy(settings.policy_file)
    client = sync_redis(settings)
    try:
        report = router_rebuild(settings.bootstrap_list(), client, prefix=settings.redis_prefix,
                                window=policy.router.repeat_window,
                                ttl=timedelta(days=settings.case_ttl_days), now=datetime.now(UTC))
    finally:
        client.close()
    print(report)
    return 0


def add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run SERVICE`` command to a command line (this one and `complaints`)."""
    p = sub.add_parser("run", help="run one service in this process")
    p.add_argument("service", choices=sorted(SERVICES))
    p.set_defaults(func=lambda args: run(args.service))


def add_topics(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``topics`` command to a command line (this one and `complaints`)."""
    sub.add_parser("topics", help="create the topics (idempotent)").set_defaults(func=lambda args: topics())


def add_rebuild(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``rebuild SERVICE`` command to a command line (this one and `complaints`)."""
    p = sub.add_parser("rebuild", help="rebuild a service's Redis state from the topics "
                                       "(router: stop its instances first; intake and archive: "
                                       "may run alongside; the SLA monitor and the notifier rebuild "
                                       "themselves when their keys are gone)")
    p.add_argument("service", choices=list(REBUILDS))
    p.set_defaults(func=lambda args: rebuild(args.service))


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m services``."""
    p = argparse.ArgumentParser(prog="python -m services",
                                description="Run a service, create the topics, or rebuild Redis state.")
    sub = p.add_subparsers(dest="command", required=True)
    add_run(sub)
    add_topics(sub)
    add_rebuild(sub)
    return p


def dispatch(args: argparse.Namespace) -> int:
    """Call the command's function; 2 on a configuration error."""
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"complaints: configuration error:\n{exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """``python -m services``: parse the arguments and run the command."""
    return dispatch(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
