"""The shipped units under a real systemd: README.md's "Running under systemd", step by step.

One systemd (``systemd_harness.Machine``) is booted for the module; the tests run in file
order on it. The project is installed the README's way (``/usr/bin/python3 -m venv .venv &&
.venv/bin/pip install .``) into /opt/ssi-guard, the credentials are root-only files that the
shipped unit's ``LoadCredential=`` lines deliver, the login is the README's ``systemd-run``
command with the OTP typed at its prompt, and simulators run on loopback. A drop-in adds only
``SSI_API_URL``, ``WatchdogSec=5s`` and ``ExecStart=`` reset to the shipped command plus
``--at`` (the simulator's market clock is a Monday morning; the daemon's would be now).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kit import ACCT, OTHER, REPO
from kit.daemon import GuardProcess, guard_env, read_env_file, rules_yaml, sdk_book, wait_for
from systemd_harness import HostState, Machine, why_not

pytestmark = pytest.mark.slow

REASON = why_not()
if REASON is not None:
    # CI (.ci/run) sets SSI_GUARD_REQUIRE_SYSTEMD=1: there these tests must run, not skip.
    if os.environ.get("SSI_GUARD_REQUIRE_SYSTEMD") == "1":
        raise RuntimeError(f"tests/e2e/systemd cannot run, and CI requires them: {REASON}")
    print(f"\ntests/e2e/systemd: skipped: {REASON}")
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason=REASON)]

AT = "2026-11-23T10:00:00"
CREDENTIALS = ("SSI_CLIENT_ID", "SSI_API_KEY", "SSI_API_SECRET", "SSI_PRIVATE_KEY")
STALE_SYMBOLS = ["BSR", "FPT", "HPG", "SHS", "SSI"]  # the demo scenario's stale orders
INSTALLED = ("pyproject.toml", "README.md", "rules.yaml", "guard", "systemd")


@dataclass
class Sim:
    process: GuardProcess
    env: dict[str, str]


@dataclass
class Box:
    machine: Machine
    host: HostState
    sim: Sim
    tmp: Path


def readme_logins() -> list[list[str]]:
    """The README's ``sudo systemd-run --pty ... ssi-guard login`` commands, as argv."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Running under systemd", 1)[1].split("\n## ", 1)[0]
    joined = section.replace("\\\n", " ")
    found = [shlex.split(line.strip())[1:] for line in joined.splitlines()
             if line.strip().startswith("sudo systemd-run --pty")]
    assert found, "README.md has no `sudo systemd-run --pty ... login` step"
    return found


def start_simulator(tmp: Path, name: str) -> Sim:
    env_file = tmp / f"{name}.env"
    process = GuardProcess(["simulator", "--port", "0", "--scenario", "demo", "--env-file",
                            str(env_file), "--at", AT], guard_env({}, tmp / f"{name}-unused"))
    assert wait_for(lambda: any("mode 0600" in x for x in process.lines), 30), process.stderr
    return Sim(process, read_env_file(env_file))


def put_config(machine: Machine, sim: Sim, sub: str = "") -> None:
    """/etc/ssi-guard[/sub]/rules.yaml and credentials/*, root-only, as README step 2."""
    etc = machine.etc / sub if sub else machine.etc
    creds = etc / "credentials"
    creds.mkdir(parents=True, mode=0o700)
    os.chmod(etc, 0o755)  # the dynamic user reads rules.yaml; credentials/ stays 0700
    for name in CREDENTIALS:
        fd = os.open(creds / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, sim.env[name].encode())
        os.close(fd)
    (etc / "rules.yaml").write_text(rules_yaml(poll="1s"), encoding="utf-8")


def drop_in(machine: Machine, unit: str, url: str) -> None:
    """The test's only additions: the simulator's URL, a short watchdog, and --at."""
    shipped = (REPO / "systemd" / unit).read_text(encoding="utf-8")
    [exec_start] = re.findall(r"^ExecStart=(.+)$", shipped, re.MULTILINE)
    folder = machine.units / f"{unit}.d"
    folder.mkdir()
    (folder / "test.conf").write_text(
        f"[Service]\nEnvironment=SSI_API_URL={url}\nWatchdogSec=5s\n"
        f"ExecStart=\nExecStart={exec_start} --at {AT}\n", encoding="utf-8")


def login(machine: Machine, argv: list[str], url: str, otp: str) -> str:
    """Run the README's login command on a pty, typing the OTP at its prompt."""
    assert argv[0] == "systemd-run"
    argv = [argv[0], "-p", f"Environment=SSI_API_URL={url}", *argv[1:]]  # as README says
    master, slave = pty.openpty()
    proc = subprocess.Popen([*machine.nsenter(), *argv], stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True, start_new_session=True)
    os.close(slave)
    seen, typed = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not typed and b"OTP" in seen:
            os.write(master, otp.encode() + b"\r")
            typed = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    code = proc.wait(timeout=10)
    out = seen.decode(errors="replace")
    assert typed, out
    assert code == 0, out
    return out


def journal(machine: Machine, unit: str) -> list[dict[str, Any]]:
    out = machine.run("journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def wait_events(machine: Machine, unit: str, event: str, times: int = 1,
                timeout: float = 30) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]]:
        hits = [e for e in journal(machine, unit) if e.get("event") == event]
        return hits if len(hits) >= times else []

    hits = wait_for(found, timeout, step=0.3)
    assert hits, f"no {event} x{times} from {unit}:\n" + machine.run(
        "journalctl", "-u", unit, "-o", "cat", "--no-pager").stdout[-3000:]
    return list(hits)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    host = HostState.take()
    tmp = tmp_path_factory.mktemp("systemd")
    machine = Machine()
    sim: Sim | None = None
    try:
        machine.boot()
        # README step 1, with the source copied where the namespace sees it.
        for name in INSTALLED:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, machine.opt / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, machine.opt / name)
        env = {**os.environ, "PIP_CACHE_DIR": "/opt/ssi-guard/.pip-cache",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        machine.run("sh", "-c", "cd /opt/ssi-guard && /usr/bin/python3 -m venv .venv && "
                    ".venv/bin/pip install -q .", env=env, timeout=300)
        shutil.rmtree(machine.opt / ".pip-cache", ignore_errors=True)
        sim = start_simulator(tmp, "sim")
        put_config(machine, sim)  # step 2
        shutil.copy(REPO / "systemd" / "ssi-guard.service", machine.units)  # step 3
        drop_in(machine, "ssi-guard.service", sim.env["SSI_API_URL"])
        machine.systemctl("daemon-reload")
        yield Box(machine, host, sim, tmp)
    finally:
        if sim is not None:
            sim.process.stop()
            sim.process.close()
        machine.close()
        changed = host.diff()
        host.forget()
        assert changed == [], changed


def test_the_login_step_from_the_readme_caches_a_token(box: Box) -> None:
    out = login(box.machine, readme_logins()[0], box.sim.env["SSI_API_URL"],
                box.sim.env["SSI_OTP"])
    assert "logged in; token cached in /var/lib/ssi-guard/token.json (mode 0600)" in out
    assert box.sim.env["SSI_OTP"] not in out.replace("OTP (leave", "")
    token = box.machine.varlib / "private" / "ssi-guard" / "token.json"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def test_start_returns_once_ready_with_a_status_line(box: Box) -> None:
    box.machine.systemctl("start", "ssi-guard", timeout=60)
    shown = box.machine.show("ssi-guard", "ActiveState", "SubState", "StatusText", "Type")
    assert (shown["Type"], shown["ActiveState"], shown["SubState"]) == (
        "notify", "active", "running")  # activating until READY=1 came
    assert shown["StatusText"].startswith("healthy"), shown
    status = box.machine.systemctl("status", "ssi-guard", check=False).stdout
    assert "Active: active (running)" in status
    assert re.search(r"^\s+Status: \"healthy", status, re.MULTILINE), status


def test_stale_orders_are_cancelled_and_confirmed(box: Box) -> None:
    confirmed = wait_events(box.machine, "ssi-guard", "cancel.confirmed", times=5)
    assert sorted(e["symbol"] for e in confirmed) == STALE_SYMBOLS


def test_a_failed_strategy_unit_pulls_its_orders_through_the_running_guard(box: Box) -> None:
    """README's OnFailure= recipe: the strategy fails, the shipped panic unit runs cancel-all
    as the guard's dynamic user, which asks the running daemon (no second login): the fresh
    VNM order goes, PVS (not in the filter) stays, and the daemon keeps its pid and session."""
    m = box.machine
    pid = m.show("ssi-guard", "MainPID")["MainPID"]
    shutil.copy(REPO / "systemd" / "ssi-guard-cancel-all@.service", m.units)
    (m.etc / "cancel-all").mkdir(mode=0o755)
    (m.etc / "cancel-all" / "strategy-a.env").write_text(
        "CANCEL_ALL_ARGS=--symbol VNM --account 0001234\n", encoding="utf-8")
    (m.units / "strategy-a.service").write_text(
        "[Unit]\nDescription=strategy A\nOnFailure=ssi-guard-cancel-all@strategy-a.service\n"
        "[Service]\nExecStart=/bin/false\nRestart=no\n", encoding="utf-8")
    m.systemctl("daemon-reload")
    m.systemctl("start", "strategy-a", check=False)

    def panicked() -> dict[str, str] | None:
        shown = m.show("ssi-guard-cancel-all@strategy-a", "Result", "ExecMainStatus",
                       "ExecMainExitTimestampMonotonic")
        return shown if shown["ExecMainExitTimestampMonotonic"] not in ("", "0") else None

    shown = wait_for(panicked, 60, step=0.5)
    out = m.run("journalctl", "-u", "ssi-guard-cancel-all@strategy-a", "-o", "cat",
                "--no-pager").stdout
    assert shown and (shown["Result"], shown["ExecMainStatus"]) == ("success", "0"), out
    assert "done by the running daemon" in out and "cancelled" in out, out
    [received] = wait_events(m, "ssi-guard", "control.received")
    assert received["symbols"] == ["VNM"]
    confirmed = wait_events(m, "ssi-guard", "cancel.confirmed", times=6)
    assert "VNM" in {e["symbol"] for e in confirmed}
    assert "PVS" not in {e["symbol"] for e in confirmed}
    assert m.show("ssi-guard", "MainPID")["MainPID"] == pid
    assert not [e for e in journal(m, "ssi-guard") if e.get("event") == "auth.reauth_required"]


def test_the_journal_has_the_json_events(box: Box) -> None:
    events = journal(box.machine, "ssi-guard")
    names = {e.get("event") for e in events}
    assert {"daemon.ready", "sweep.finished", "cancel.confirmed"} <= names, names
    raw = box.machine.run("journalctl", "-u", "ssi-guard", "-o", "cat", "--no-pager").stdout
    for secret in (box.sim.env["SSI_API_SECRET"], box.sim.env["SSI_OTP"]):
        assert secret not in raw


def test_credentials_come_through_load_credential_and_state_is_private(box: Box) -> None:
    m = box.machine
    shown = m.show("ssi-guard", "MainPID", "Environment", "LoadCredential")
    assert "SSI_API_SECRET" not in shown["Environment"]
    pid = shown["MainPID"]
    environ = m.run("cat", f"/proc/{pid}/environ").stdout.split("\0")
    assert not [v for v in environ if v.startswith(CREDENTIALS)]
    assert "CREDENTIALS_DIRECTORY=/run/credentials/ssi-guard.service" in environ
    listed = m.run("ls", "/run/credentials/ssi-guard.service").stdout.split()
    assert sorted(listed) == sorted(CREDENTIALS)
    uid = next(int(line.split()[1]) for line in
               m.run("cat", f"/proc/{pid}/status").stdout.splitlines()
               if line.startswith("Uid:"))
    assert 61184 <= uid <= 65519  # systemd's dynamic user range
    state = m.varlib / "private" / "ssi-guard"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700 and state.stat().st_uid == uid
    files = [p for p in state.iterdir() if p.is_file()]
    assert {"token.json", "journal.sqlite3"} <= {p.name for p in files}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert path.stat().st_uid == uid, path


def test_the_loaded_unit_scores_at_most_2(box: Box) -> None:
    out = box.machine.run("systemd-analyze", "security", "ssi-guard", "--no-pager").stdout
    match = re.search(r"Overall exposure level for ssi-guard.service: (\d+\.\d+)", out)
    assert match, out[-1000:]
    assert float(match.group(1)) <= 2.0


def test_reload_keeps_the_pid_and_an_invalid_file_keeps_the_old_rules(box: Box) -> None:
    m = box.machine
    pid = m.show("ssi-guard", "MainPID")["MainPID"]
    rules = m.etc / "rules.yaml"
    rules.write_text(rules_yaml(poll="2s"), encoding="utf-8")
    m.systemctl("reload", "ssi-guard")
    [reloaded] = wait_events(m, "ssi-guard", "rules.reloaded")
    assert reloaded["poll_every_s"] == 2.0
    rules.write_text("version: 1\nrules: [oops\n", encoding="utf-8")
    m.systemctl("reload", "ssi-guard")
    [failed] = wait_events(m, "ssi-guard", "rules.reload_failed")
    assert failed["kept"] == "previous rules"
    shown = m.show("ssi-guard", "MainPID", "ActiveState", "StatusText")
    assert (shown["MainPID"], shown["ActiveState"]) == (pid, "active")
    assert "rules reload failed" in shown["StatusText"]
    rules.write_text(rules_yaml(poll="1s"), encoding="utf-8")
    m.systemctl("reload", "ssi-guard")
    wait_events(m, "ssi-guard", "rules.reloaded", times=2)


def test_a_hung_process_is_killed_by_the_watchdog_and_restarted(box: Box) -> None:
    m = box.machine
    before = m.show("ssi-guard", "MainPID", "NRestarts")
    m.run("kill", "-STOP", before["MainPID"])

    def restarted() -> dict[str, str] | None:
        now = m.show("ssi-guard", "MainPID", "NRestarts", "ActiveState", "SubState")
        again = (now["NRestarts"] != before["NRestarts"] and now["ActiveState"] == "active"
                 and now["SubState"] == "running")
        return now if again else None

    now = wait_for(restarted, 40, step=0.5)
    assert now, m.systemctl("status", "ssi-guard", check=False).stdout
    assert int(now["NRestarts"]) == int(before["NRestarts"]) + 1
    assert now["MainPID"] != before["MainPID"]
    log = m.run("journalctl", "-u", "ssi-guard", "--no-pager").stdout
    assert "Watchdog timeout" in log, log[-2000:]


def test_stop_drains_and_exits_0(box: Box) -> None:
    m = box.machine
    m.systemctl("stop", "ssi-guard", timeout=120)
    shown = m.show("ssi-guard", "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert (shown["ActiveState"], shown["Result"], shown["ExecMainStatus"]) == (
        "inactive", "success", "0"), shown
    assert wait_events(m, "ssi-guard", "daemon.stopped")
    book = sdk_book(box.sim.env, "2026/11/23")
    statuses = {k.split("/")[0]: v for acct in (ACCT, OTHER) for k, v in book[acct].items()}
    assert {s: statuses[s] for s in STALE_SYMBOLS} == {
        "BSR": "CL", "FPT": "CL", "HPG": "FFPC", "SHS": "CL", "SSI": "CL"}


def test_two_template_instances_side_by_side(box: Box) -> None:
    m = box.machine
    # A host runs the plain unit or the template (README): the plain unit's state goes first,
    # or the instances' StateDirectory=ssi-guard/NAME would nest inside it.
    (m.varlib / "ssi-guard").unlink()
    shutil.rmtree(m.varlib / "private" / "ssi-guard")
    shutil.copy(REPO / "systemd" / "ssi-guard@.service", m.units)
    sims = {name: start_simulator(box.tmp, name) for name in ("alpha", "beta")}
    try:
        [template_login] = [a for a in readme_logins() if any("ssi-guard/alpha" in x for x in a)]
        for name, sim in sims.items():
            put_config(m, sim, name)
            folder = m.units / f"ssi-guard@{name}.service.d"
            shipped = (REPO / "systemd" / "ssi-guard@.service").read_text(encoding="utf-8")
            [exec_start] = re.findall(r"^ExecStart=(.+)$", shipped, re.MULTILINE)
            folder.mkdir()
            (folder / "test.conf").write_text(
                f"[Service]\nEnvironment=SSI_API_URL={sim.env['SSI_API_URL']}\n"
                f"ExecStart=\nExecStart={exec_start} --at {AT}\n", encoding="utf-8")
            argv = [x.replace("alpha", name) for x in template_login]
            login(m, argv, sim.env["SSI_API_URL"], sim.env["SSI_OTP"])
        m.systemctl("daemon-reload")
        started = m.systemctl("start", "ssi-guard@alpha", "ssi-guard@beta", check=False,
                              timeout=60)
        assert started.returncode == 0, started.stderr + m.run(
            "journalctl", "-u", "ssi-guard@alpha", "--no-pager").stdout[-3000:]
        for name in sims:
            confirmed = wait_events(m, f"ssi-guard@{name}", "cancel.confirmed", times=5)
            assert sorted(e["symbol"] for e in confirmed) == STALE_SYMBOLS
            state = m.varlib / "private" / "ssi-guard" / name
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            assert (state / "journal.sqlite3").exists()
        pids = {m.show(f"ssi-guard@{n}", "MainPID")["MainPID"] for n in sims}
        assert len(pids) == 2 and "0" not in pids
        m.systemctl("stop", "ssi-guard@alpha", "ssi-guard@beta", timeout=120)
        for name, sim in sims.items():
            shown = m.show(f"ssi-guard@{name}", "Result", "ExecMainStatus")
            assert (shown["Result"], shown["ExecMainStatus"]) == ("success", "0")
            book = sdk_book(sim.env, "2026/11/23")
            assert sum(v == "CL" for acct in book.values() for v in acct.values()) >= 4
    finally:
        for sim in sims.values():
            sim.process.stop()
            sim.process.close()


def test_the_host_is_left_as_it_was(box: Box) -> None:
    """Power off now and check the host: the marker in its /tmp, its mounts, its cgroups."""
    box.machine.close()
    changed = box.host.diff()
    assert changed == [], changed
    assert box.host.marker.read_text() == box.host.text

