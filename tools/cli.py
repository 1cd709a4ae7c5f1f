"""The `complaints` command: the services' own commands (run, topics, rebuild) and the tools."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.__main__ import add_rebuild, add_run, add_topics, dispatch
from tools.archive_cli import add_archive_commands
from tools.privacy_cli import add_privacy_commands
from tools.staff import add_staff


def _schemas_export(args: argparse.Namespace) -> int:
    from schemas.export import export

    for path in export(Path(args.out)) if args.out else export():
        print(path)
    return 0


def _up(args: argparse.Namespace) -> int:
    from tools.devstack.up import up

    only = tuple(n.strip() for n in (args.only or "").split(",") if n.strip())
    return up(demo=args.demo, sla_scale=args.sla_scale, postgres=args.postgres, only=only,
              broker=args.broker)


def _post(args: argparse.Namespace) -> int:
    import json

    from services.common.settings import CommonSettings, load_settings
    from services.intake.signing import post_file

    status, answer = post_file(args.url, args.channel, Path(args.file),
                               data_dir=load_settings(CommonSettings).data_dir)
    print(status, json.dumps(answer, ensure_ascii=False, indent=2))
    return 0 if status < 400 else 1


def _bench(args: argparse.Namespace) -> int:
    from tools.bench.run import ArchiveOptions, bench

    return bench(count=args.count, timeout=args.timeout, stage=args.stage, via=args.via,
                 concurrency=args.concurrency, intake_url=args.intake_url,
                 intake_processes=args.intake_processes, redis_footprint=args.redis_footprint,
                 archive=ArchiveOptions(url=args.archive_url, report_cases=args.report_cases,
                                        pid=args.archive_pid),
                 rate=args.rate, duration=args.duration, steady=args.steady)


def _replay(args: argparse.Namespace) -> int:
    from tools.replay.run import main

    return main(args.file, channel=args.channel, fmt=args.format, limit=args.limit,
                timeout=args.timeout, wait=not args.no_wait)


def _fuzz(args: argparse.Namespace) -> int:
    from tools.fuzz.run import main

    return main(args.channel, args.count, via=args.via, seed=args.seed, url=args.url,
                concurrency=args.concurrency, timeout=args.timeout)


def _notify_preview(args: argparse.Namespace) -> int:
    from schemas.events import Nature, NotificationKind
    from services.common.policy import load_policy
    from services.common.settings import CommonSettings, load_settings
    from services.notifier.messages import SAMPLE, render_text

    policy = load_policy(load_settings(CommonSettings).policy_file)
    subject, body = render_text(NotificationKind(args.kind), args.lang, SAMPLE, templates=policy.notifier,
                                nature=Nature(args.nature))
    print(f"Subject: {subject}\n\n{body}")
    return 0


def _report(args: argparse.Namespace) -> int:
    """`complaints report`: the complaint analysis report of a period from the archive database."""
    from datetime import UTC, datetime

    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from services.archive.adapters import DatabaseUnavailable
    from services.archive.database import make_engine, upgrade
    from services.archive.reports.period import PeriodError, local_date, parse_period
    from services.archive.reports.service import build_report
    from services.archive.settings import ArchiveSettings
    from services.common.errors import ConfigError
    from services.common.policy import load_policy
    from services.common.settings import load_settings
    from services.sla_monitor.calendar import load_calendar
    from services.sla_monitor.settings import SlaMonitorSettings

    def fail(message: str) -> int:
        print(f"complaints report: {message}", file=sys.stderr)
        return 2

    try:
        settings = load_settings(ArchiveSettings)
        policy = load_policy(settings.policy_file)
        calendar = load_calendar(load_settings(SlaMonitorSettings).calendar_file)
        engine = make_engine(settings.database())
    except ConfigError as exc:
        return fail("configuration error: " + "; ".join(str(exc).splitlines()))
    now, tz = datetime.now(UTC), policy.reports.timezone
    try:
        period, _ = parse_period(month=args.month, start=args.start, end=args.end, timezone=tz,
                                 today=local_date(now, tz))
    except PeriodError as exc:
        engine.dispose()
        return fail(str(exc))
    try:
        upgrade(engine)
        report = build_report(engine, period=period, by=args.by, policy=policy, calendar=calendar, now=now)
    except (SQLAlchemyError, DatabaseUnavailable, CommandError) as exc:
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        return fail(f"archive database: {type(exc).__name__}: {first}"[:300])
    finally:
        engine.dispose()
    try:
        from services.archive.reports.render import render
    except ImportError as exc:
        if args.format != "json":
            return fail(f"cannot render {args.format}: {exc}")
        import json

        from services.archive.reports.model import as_json

        text = json.dumps(as_json(report), ensure_ascii=False, indent=2) + "\n"
    else:
        text = render(report, fmt=args.format, lang=args.lang)
    for note in report.notes:
        print(f"complaints report: note: {note}", file=sys.stderr)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        return fail(f"cannot write {args.out}: {exc.strerror}")
    print(f"complaints report: wrote {args.out} ({period.label}, {args.format}, {args.lang})",
          file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line of `complaints`."""
    from schemas.events import Nature, NotificationKind

    p = argparse.ArgumentParser(prog="complaints", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    add_run(sub)
    add_topics(sub)

    schemas = sub.add_parser("schemas", help="message contracts")
    ssub = schemas.add_subparsers(dest="schemas_command", required=True)
    exp = ssub.add_parser("export", help="write JSON Schema files")
    exp.add_argument("--out", help="directory (default: the package's schemas/json)")
    exp.set_defaults(func=_schemas_export)

    upp = sub.add_parser("up", help="run the whole stack; embedded broker and Redis if none answer")
    upp.add_argument("--demo", action="store_true", help="feed sample complaints, print their way")
    upp.add_argument("--sla-scale", type=float, default=1.0, metavar="N",
                     help="divide every time limit by N (demos and tests)")
    upp.add_argument("--postgres", action="store_true",
                     help="keep the archive in a PostgreSQL of its own (the machine's server binaries, "
                          "cluster under $COMPLAINTS_DATA_DIR/postgres, port $ARCHIVE_POSTGRES_PORT "
                          "or 55432) instead of SQLite")
    upp.add_argument("--only", metavar="NAME[,NAME]",
                     help="start only these services, e.g. archive (a stage's bench beside nothing "
                          "else); the broker, Redis and topics as usual")
    upp.add_argument("--broker", choices=("tansu", "kafka"), default="tansu",
                     help="what to start when no broker answers: tansu (embedded, memory only; the "
                          "default) or kafka (Apache Kafka, needs Java and Maven; its data under "
                          "$COMPLAINTS_DATA_DIR/kafka survives a restart)")
    upp.set_defaults(func=_up)

    post = sub.add_parser("post", help="post a payload file to intake, signed like an integration")
    post.add_argument("channel")
    post.add_argument("file", help=".json, .eml, .xml or .txt")
    post.add_argument("--url", default="http://127.0.0.1:8080", help="intake base URL")
    post.set_defaults(func=_post)

    notify = sub.add_parser("notify", help="notification templates")
    nsub = notify.add_subparsers(dest="notify_command", required=True)
    preview = nsub.add_parser("preview", help="render a kind's template from sample data")
    preview.add_argument("kind", choices=[k.value for k in NotificationKind])
    preview.add_argument("--lang", choices=["zh", "en"], default="zh")
    preview.add_argument("--nature", choices=[n.value for n in Nature], default="complaint",
                         help="the words for praise or a suggestion (policy notifier.by_nature)")
    preview.set_defaults(func=_notify_preview)

    add_rebuild(sub)
    add_archive_commands(sub)  # after add_rebuild: whatif, export, history
    add_staff(sub)
    add_privacy_commands(sub)

    b = sub.add_parser("bench", help="drive complaints through the running stack, print figures")
    b.add_argument("--count", type=int, metavar="N",
                   help="the burst: N complaints queued at once (default 2000); not with --duration")
    b.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the stack")
    b.add_argument("--stage", choices=["pipeline", "intake", "router", "notifier", "sla", "archive"],
                   default="pipeline",
                   help="pipeline: inbound to acknowledgement (default); intake: to registration; "
                        "router: registration to routing decision; notifier: registration to "
                        "acknowledgement sent; sla: breach lateness; archive: events archived/s "
                        "(burst, drain of a backlog, steady) and the monthly report's time over a "
                        "million cases")
    b.add_argument("--via", choices=["kafka", "http"], default="kafka",
                   help="feed complaints.inbound (default) or POST web forms to intake (intake "
                        "stage, and the pipeline's steady mode)")
    b.add_argument("--concurrency", type=int, metavar="N",
                   help="HTTP connections, one thread each (default 16); in the steady mode the "
                        "senders, any free one taking the next complaint due (default 4 x R, "
                        "16 to 256)")
    b.add_argument("--intake-url", metavar="URL",
                   help="intake base URL (default http://127.0.0.1:$INTAKE_HTTP_PORT, port 8080)")
    b.add_argument("--processes", "--intake-processes", dest="intake_processes", type=int,
                   default=1, metavar="K",
                   help="processes of the measured service (intake or router) serving the run, "
                        "to report the per-process rate (default 1)")
    b.add_argument("--redis-footprint", action="store_true",
                   help="after the run, measure the Redis memory of every key under REDIS_PREFIX "
                        "(MEMORY USAGE), by service, per complaint of the run; needs a stack whose "
                        "prefix holds this run's complaints only")
    b.add_argument("--archive-url", metavar="URL",
                   help="archive stage: the archive's base URL (default http://127.0.0.1:$ARCHIVE_HTTP_PORT)")
    b.add_argument("--archive-pid", type=int, metavar="PID",
                   help="archive stage: the archive's process, stopped (SIGSTOP) while the drain "
                        "figure's backlog is produced (default: the process listening on the "
                        "archive's port)")
    b.add_argument("--rate", type=float, metavar="R",
                   help="pipeline, with --duration: the steady mode, R complaints/s sent on "
                        "schedule (open loop), figures per hop, backlog, CPU per process; "
                        "archive stage: events/s of the steady phase (default half the burst rate)")
    b.add_argument("--duration", type=float, metavar="S",
                   help="pipeline: seconds of the steady mode (with --rate; not with --count)")
    b.add_argument("--steady", type=float, metavar="S",
                   help="archive stage: seconds of the steady phase (default 20)")
    b.add_argument("--report-cases", type=int, default=1_000_000, metavar="N",
                   help="archive stage: archived cases of the report figure, in a scratch "
                        "PostgreSQL database (default 1,000,000; 0 skips it)")
    b.set_defaults(func=_bench)

    r = sub.add_parser("replay", help="feed a CSV or JSONL export through intake, account for every row")
    r.add_argument("file", help=".csv, .jsonl or .ndjson")
    how = r.add_mutually_exclusive_group(required=True)
    how.add_argument("--channel", metavar="C",
                     help="rows are this channel's own payloads (web_form, phone, email ...)")
    how.add_argument("--format", choices=["cfpb"], help="rows are a CFPB complaint export")
    r.add_argument("--limit", type=int, metavar="N", help="only the first N rows")
    r.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="seconds to wait for intake after producing (default 120)")
    r.add_argument("--no-wait", action="store_true", help="produce only; do not account")
    r.set_defaults(func=_replay)

    fz = sub.add_parser("fuzz", help="hostile generated payloads through the running intake (HTTP and "
                                     "Kafka); every one must be registered, dead-lettered or a 4xx")
    fz.add_argument("--channel", default="all", help="a channel, or all (default)")
    fz.add_argument("--count", type=int, default=1000, metavar="N", help="payloads per channel and path")
    fz.add_argument("--via", default="http,kafka", help="http, kafka or both (default http,kafka)")
    fz.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    fz.add_argument("--url", metavar="URL", help="intake base URL (default http://127.0.0.1:$INTAKE_HTTP_PORT)")
    fz.add_argument("--concurrency", type=int, default=8, metavar="N", help="HTTP connections (default 8)")
    fz.add_argument("--timeout", type=float, default=600.0, metavar="S",
                    help="seconds to wait for the outcomes after sending (default 600)")
    fz.set_defaults(func=_fuzz)

    rep = sub.add_parser("report", help="the complaint analysis report of a period, from the archive "
                                        "(ARCHIVE_DATABASE_URL; docs/reports.md)")
    rep.add_argument("--month", metavar="YYYY-MM", help="a calendar month (the report's time zone)")
    rep.add_argument("--from", dest="start", metavar="YYYY-MM-DD", help="first day (with --to)")
    rep.add_argument("--to", dest="end", metavar="YYYY-MM-DD", help="last day, inclusive (with --from)")
    rep.add_argument("--by", choices=["channel", "code", "department", "handler", "severity"],
                     help="add an assessment table grouped by this")
    rep.add_argument("--format", choices=["html", "md", "json", "csv"], default="md",
                     help="html: one self-contained file with charts (default md)")
    rep.add_argument("--lang", choices=["zh", "en"], default="zh", help="default zh")
    rep.add_argument("--out", metavar="FILE", help="write here (default: standard output)")
    rep.set_defaults(func=_report)
    return p


def main(argv: list[str] | None = None) -> int:
    """The `complaints` command: parse the arguments and run the command."""
    return dispatch(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
