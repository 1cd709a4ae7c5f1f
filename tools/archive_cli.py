"""The archive's commands of `complaints`: whatif, export and history.

    complaints whatif --policy FILE --from D --to D [--format text|json] [--tz Z] [--as-of T]
    complaints export --from D --to D [--format csv|jsonl] [--out FILE] [--tz Z]
    complaints history ID [--lang zh|en] [--tz Z]

``tools/cli.py`` registers them with ``add_archive_commands(sub)``; ``complaints rebuild archive``
is the services' own command (``python -m services rebuild archive``). ``python -m tools.archive_cli``
offers the same commands on their own, with the services' ``rebuild``. Every command reads
ArchiveSettings (ARCHIVE_DATABASE_URL, or archive.sqlite3 under COMPLAINTS_DATA_DIR) and migrates
the database first. Dates are local dates in ``--tz`` (default: the policy's
``reports.timezone``, as the reports read them), both ends included.
Exit codes: 0 done; 1 failed (database or broker unreachable, unknown complaint, file not
written); 2 bad input (arguments, policy file, settings). Never a traceback for these.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alembic.util import CommandError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from services.archive.adapters import DatabaseUnavailable, SqlStore
from services.archive.database import make_engine, upgrade
from services.archive.settings import ArchiveSettings
from services.common.errors import ConfigError
from services.common.settings import load_settings

Command = Callable[[argparse.Namespace], int]


# ---- arguments -----------------------------------------------------------------------


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {text!r} (e.g. Asia/Shanghai)") from None


def _instant(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"not a time with its offset (2026-12-01T09:00+08:00): {text!r}")
    return at.astimezone(UTC)


def _range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="date_from", type=_day, required=True, metavar="D", help="first date")
    p.add_argument("--to", dest="date_to", type=_day, required=True, metavar="D", help="last date (included)")
    p.add_argument("--tz", type=_zone, metavar="ZONE",
                   help="time zone of the dates and times (default: the policy's reports.timezone)")


def add_archive_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add whatif, export and history to a command line (``rebuild archive`` is the services' own)."""
    w = sub.add_parser("whatif", help="recompute archived deadlines under another policy, old beside new")
    w.add_argument("--policy", required=True, metavar="FILE", help="the policy file to try")
    _range(w)
    w.add_argument("--format", choices=["text", "json"], default="text")
    w.add_argument("--as-of", type=_instant, metavar="TIME",
                   help="clocks as they stood at this time, e.g. 2026-12-01T09:00+08:00 (default: now)")
    w.set_defaults(func=_guarded(whatif_command))

    e = sub.add_parser("export", help="closed cases of a period as CSV or JSON lines (no personal data)")
    _range(e)
    e.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    e.add_argument("--out", metavar="FILE", help="write here (default: standard output)")
    e.set_defaults(func=_guarded(export_command))

    h = sub.add_parser("history", help="the audit trail of one archived case, readable")
    h.add_argument("id", help="complaint id")
    h.add_argument("--lang", choices=["zh", "en"], default="zh")
    h.add_argument("--tz", type=_zone, metavar="ZONE",
                   help="time zone (default: the policy's reports.timezone)")
    h.set_defaults(func=_guarded(history_command))


def _guarded(command: Command) -> Command:
    """The command, its expected failures turned into a message and an exit code."""
    def run(args: argparse.Namespace) -> int:
        name = f"complaints {args.command}"
        try:
            return command(args)
        except ConfigError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        except (DatabaseUnavailable, DBAPIError, CommandError) as exc:
            reason = getattr(exc, "orig", None) or exc
            first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
            print(f"{name}: archive database: {first}", file=sys.stderr)
            return 1
    return run


def _ordered(args: argparse.Namespace) -> bool:
    if args.date_to < args.date_from:
        print(f"complaints {args.command}: --to {args.date_to} is before --from {args.date_from}",
              file=sys.stderr)
        return False
    return True


# ---- the archive ---------------------------------------------------------------------


@contextmanager
def archive(settings: ArchiveSettings) -> Iterator[Engine]:
    """The archive's engine, migrated to the head revision; disposed of afterwards."""
    engine = make_engine(settings.database())
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()


def _zone_of(args: argparse.Namespace, settings: ArchiveSettings) -> ZoneInfo:
    """``--tz``, or the reports' time zone (the policy's ``reports.timezone``)."""
    if args.tz is not None:
        return args.tz  # type: ignore[no-any-return]
    from services.common.policy import load_policy

    return ZoneInfo(load_policy(settings.policy_file).reports.timezone)


# ---- commands ------------------------------------------------------------------------


def whatif_command(args: argparse.Namespace) -> int:
    """`complaints whatif`: print timeliness and breaches per milestone, old beside new."""
    from services.archive.whatif import render, whatif
    from services.common.policy import load_policy
    from services.sla_monitor.calendar import load_calendar
    from services.sla_monitor.logic import CALENDAR_TIME
    from services.sla_monitor.settings import SlaMonitorSettings

    if not _ordered(args):
        return 2
    settings = load_settings(ArchiveSettings)
    policy_new = load_policy(Path(args.policy))
    policy_old = load_policy(settings.policy_file)
    business = load_calendar(load_settings(SlaMonitorSettings).calendar_file)
    tz = args.tz or ZoneInfo(policy_old.reports.timezone)
    with archive(settings) as engine:
        result = whatif(engine, policy_new=policy_new, policy_old=policy_old,
                        calendars={"calendar": CALENDAR_TIME, "business": business},
                        date_from=args.date_from, date_to=args.date_to, tz=tz,
                        now=args.as_of or datetime.now(UTC), scale=settings.sla_scale)
    empty = (f"no archived complaints received between {args.date_from} and {args.date_to} "
             f"({tz.key})")
    if args.format == "json":
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
        if not result.complaints:
            print(empty, file=sys.stderr)
    else:
        print(render(result, policy_file=args.policy) if result.complaints else empty)
    return 0


def export_command(args: argparse.Namespace) -> int:
    """`complaints export`: closed cases of the range as CSV or JSONL; the count on stderr."""
    from services.archive.export import closed_cases, write
    from services.archive.whatif import day_range

    if not _ordered(args):
        return 2
    settings = load_settings(ArchiveSettings)
    tz = _zone_of(args, settings)
    start, end = day_range(args.date_from, args.date_to, tz)
    with archive(settings) as engine:
        rows = closed_cases(engine, start=start, end=end)
        try:
            with _output(args.out) as out:
                n = write(rows, out, fmt=args.format)
        except OSError as exc:
            print(f"complaints export: cannot write {args.out or 'standard output'}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    where = f" to {args.out}" if args.out else ""
    print(f"exported {n} closed cases ({args.date_from} .. {args.date_to}, {tz.key}) as {args.format}{where}",
          file=sys.stderr)
    return 0


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """A UTF-8 text stream for the export: standard output, or a file that appears whole."""
    if path is None:
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        try:
            yield out
        finally:
            out.flush()
            out.detach()
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with open(fd, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def history_command(args: argparse.Namespace) -> int:
    """`complaints history ID`: the case's audit trail, one readable line per event."""
    from services.archive.history import history_lines

    settings = load_settings(ArchiveSettings)
    with archive(settings) as engine:
        trail = SqlStore(engine).trail(args.id)
    if not trail:
        print(f"no archived complaint {args.id}", file=sys.stderr)
        return 1
    tz = _zone_of(args, settings)
    title = (f"投诉 {args.id} 的处理记录（{len(trail)} 条，{tz.key}）" if args.lang == "zh"
             else f"Audit trail of complaint {args.id} ({len(trail)} events, {tz.key})")
    print("\n".join([title, *history_lines(trail, lang=args.lang, tz=tz)]))
    return 0


def parser() -> argparse.ArgumentParser:
    """The archive's commands on their own (and the services' ``rebuild``), as `complaints` has them."""
    from services.__main__ import add_rebuild

    p = argparse.ArgumentParser(prog="complaints", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    add_rebuild(sub)
    add_archive_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the command."""
    from services.__main__ import dispatch

    return dispatch(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
