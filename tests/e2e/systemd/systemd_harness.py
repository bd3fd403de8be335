"""A real systemd (PID 1 of fresh namespaces) for the unit tests, that leaves the host as it was.

Booting systemd on the host's file system is dangerous: at boot ``systemd-tmpfiles --boot
--remove`` empties /tmp, ``systemd-sysusers`` edits /etc/passwd, ``systemd-sysctl`` sets the
host kernel's sysctls, and systemd remounts the cgroup tree read-only. So the boot is fenced:

- ``unshare --cgroup --pid --fork --mount --mount-proc --uts --ipc``, started from a cgroup of
  its own (cgroup v2), so every cgroup systemd makes is under that one, removed afterwards;
- in order: ``mount --make-rprivate /``; private tmpfs over /run, /tmp, /var/tmp, /var/log;
  throwaway directories bind-mounted over every other path written (/opt/ssi-guard,
  /etc/ssi-guard, /etc/systemd/system, /var/lib, /var/log/journal, and /dev/console, which
  systemd writes to); a cgroup2 mount of the namespace's own cgroup; ``mount --make-rshared /``
  (without a shared /run, ``LoadCredential=`` leaves the credentials unreadable); then
  ``exec /lib/systemd/systemd --system``;
- /etc/systemd/system is the throwaway directory, so the host's enabled units are not there,
  and every unit that would touch the host (tmpfiles, sysusers, sysctl, binfmt, udev, ...) is
  masked in it. systemd boots ``basic.target`` with journald and D-Bus only.

The throwaway directories live under /var/cache (never /tmp, which the namespace hides). The
test process writes them from outside: /etc/ssi-guard inside is ``machine.etc`` outside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSTEMD = Path("/lib/systemd/system")
PID1 = Path("/lib/systemd/systemd")

# Throwaway directory (under the machine's base) -> where the namespace sees it.
BINDS = {
    "opt": "/opt/ssi-guard",
    "etc": "/etc/ssi-guard",
    "units": "/etc/systemd/system",
    "varlib": "/var/lib",
    "journal": "/var/log/journal",
}

# Units systemd may start at boot: the journal and the bus (systemd-run --pty needs D-Bus).
KEEP = {"systemd-journald.service", "systemd-journald.socket", "systemd-journal-flush.service",
        "dbus.socket", "dbus.service"}
# Units that write outside the fence (the host's kernel, /dev, /etc) and are masked, besides
# everything the boot targets pull in that is not in KEEP.
MASK = ("systemd-udevd.service", "systemd-udev-trigger.service", "systemd-udev-settle.service",
        "systemd-udevd-control.socket", "systemd-udevd-kernel.socket", "getty.target",
        "console-getty.service", "ldconfig.service", "systemd-hwdb-update.service",
        "systemd-update-done.service", "systemd-journal-catalog-update.service",
        "systemd-remount-fs.service", "systemd-tmpfiles-setup.service",
        "systemd-tmpfiles-clean.timer", "systemd-sysusers.service", "systemd-sysctl.service",
        "systemd-logind.service")
BOOT_TARGETS = ("sysinit", "sockets", "timers", "paths", "basic", "local-fs")

BOOT_SH = """\
set -eu
B="$1"
mount --make-rprivate /
for d in /run /tmp /var/tmp /var/log; do mount -t tmpfs -o mode=755 tmpfs "$d"; done
chmod 1777 /tmp /var/tmp
mkdir -p /var/log/journal
mount --bind "$B/opt" /opt/ssi-guard
mount --bind "$B/etc" /etc/ssi-guard
mount --bind "$B/units" /etc/systemd/system
mount --bind "$B/varlib" /var/lib
mount --bind "$B/journal" /var/log/journal
mount --bind "$B/console" /dev/console
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --make-rshared /
export container=ssi-guard-test
exec /lib/systemd/systemd --system --unit=basic.target --show-status=no
"""


def why_not() -> str | None:
    """Why a systemd cannot be booted here (the tests skip with this reason), or None."""
    if os.geteuid() != 0:
        return "booting systemd in a namespace needs root"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (util-linux)"
    if not PID1.exists():
        return f"{PID1} is missing (apt-get install systemd)"
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon is missing (apt-get install dbus): systemd-run --pty needs D-Bus"
    if not Path("/usr/bin/python3").exists():
        return "/usr/bin/python3 is missing (the venv the unit runs must not live under /root)"
    if cgroup2_root() is None:
        return "no cgroup v2 hierarchy is mounted"
    probe = subprocess.run(["unshare", "--cgroup", "--pid", "--fork", "--mount", "--uts",
                            "--ipc", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"unshare is not allowed here: {probe.stderr.strip()}"
    return None


def cgroup2_root() -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[2] == "cgroup2":
            return Path(parts[1])
    return None


def _superblocks() -> dict[str, str]:
    """Mount point -> superblock options, for the host mounts a boot could remount."""
    watched = {"/", "/sys", "/sys/fs/cgroup", "/proc", "/dev", "/dev/shm", "/run", "/tmp"}
    out: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        point = left.split()[4]
        if point in watched:
            out[point] = f"{left.split()[5]} {right.split()[2]}"
    return out


def _stat(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)


WATCHED_PATHS = ("/etc", "/etc/systemd/system", "/etc/passwd", "/etc/group", "/etc/mtab",
                 "/opt", "/var", "/var/cache", "/var/lib", "/var/log", "/root", "/dev",
                 "/dev/console", "/dev/log", "/sys/fs/cgroup")


@dataclass
class HostState:
    """What the boot must not change on the host; ``diff`` names what it changed."""

    marker: Path
    text: str
    mounts: dict[str, str] = field(default_factory=_superblocks)
    stats: dict[str, tuple[int, int, int, int] | None] = field(
        default_factory=lambda: {p: _stat(p) for p in WATCHED_PATHS})
    cgroup_fs: list[str] = field(default_factory=lambda: sorted(os.listdir("/sys/fs/cgroup")))

    @classmethod
    def take(cls) -> HostState:
        """Write a marker file into the host's /tmp, then record the rest."""
        fd, name = tempfile.mkstemp(prefix="ssi-guard-host-marker.", dir="/tmp")
        text = f"left by {os.getpid()} at {time.time_ns()}\n"
        os.write(fd, text.encode())
        os.close(fd)
        return cls(marker=Path(name), text=text)

    def diff(self) -> list[str]:
        changed: list[str] = []
        if not self.marker.exists() or self.marker.read_text() != self.text:
            changed.append(f"the marker {self.marker} in the host's /tmp is gone")
        now = _superblocks()
        changed += [f"mount {p}: {self.mounts[p]} -> {now.get(p)}"
                    for p in self.mounts if now.get(p) != self.mounts[p]]
        changed += [f"{p}: {self.stats[p]} -> {_stat(p)}"
                    for p in self.stats if _stat(p) != self.stats[p]]
        if sorted(os.listdir("/sys/fs/cgroup")) != self.cgroup_fs:
            changed.append(f"/sys/fs/cgroup: {self.cgroup_fs} -> {os.listdir('/sys/fs/cgroup')}")
        return changed

    def forget(self) -> None:
        self.marker.unlink(missing_ok=True)


class Machine:
    """One booted systemd. ``run``/``systemctl`` go through nsenter; ``close`` undoes all."""

    def __init__(self) -> None:
        self._made: list[tuple[Path, int, int]] = []  # mount points made: (dir, atime, mtime)
        cache = Path("/var/cache")
        self._cache_times = (cache.stat().st_atime_ns, cache.stat().st_mtime_ns)
        self.base = Path(tempfile.mkdtemp(prefix="ssi-guard-systemd.", dir=cache))
        for name in BINDS:
            (self.base / name).mkdir()
        (self.base / "console").touch()
        self.etc = self.base / "etc"  # /etc/ssi-guard inside
        self.opt = self.base / "opt"  # /opt/ssi-guard inside
        self.units = self.base / "units"  # /etc/systemd/system inside
        self.varlib = self.base / "varlib"  # /var/lib inside
        root = cgroup2_root()
        assert root is not None
        self.cgroup = root / self.base.name
        self.cgroup.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.closed = False

    def _mountpoint(self, path: str) -> None:
        """Make a missing mount point (on the host), to be removed with its parent's times."""
        target = Path(path)
        if target.exists():
            return
        parent = target.parent.stat()
        target.mkdir()
        self._made.append((target, parent.st_atime_ns, parent.st_mtime_ns))

    def _mask(self) -> None:
        names = set(MASK)
        for target in BOOT_TARGETS:
            wants = SYSTEMD / f"{target}.target.wants"
            if wants.is_dir():
                names.update(p.name for p in wants.iterdir())
        for name in sorted(names - KEEP):
            (self.units / name).symlink_to("/dev/null")

    def boot(self, timeout: float = 30.0) -> None:
        for path in BINDS.values():
            if path != "/var/log/journal":  # made inside the namespace's /var/log tmpfs
                self._mountpoint(path)
        self._mask()
        script = self.base / "boot.sh"
        script.write_text(BOOT_SH)
        # The shell moves itself into the machine's cgroup, then becomes unshare.
        enter = 'echo 0 > "$1/cgroup.procs" && shift && exec "$@"'
        with (self.base / "boot.log").open("wb") as log:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", enter, "enter", str(self.cgroup),
                 "unshare", "--cgroup", "--pid", "--fork", "--mount", "--mount-proc", "--uts",
                 "--ipc", "/bin/sh", str(script), str(self.base)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pid = self._pid1()
            if self.pid and self.run("systemctl", "is-system-running", "--wait",
                                     check=False, timeout=timeout).stdout.strip() in (
                                         "running", "degraded"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"systemd did not boot: {self.boot_log()}")

    def _pid1(self) -> int:
        """The host pid of the namespace's PID 1 (systemd, once boot.sh exec'd it)."""
        for pid in [pid for procs in self.cgroup.rglob("cgroup.procs")
                    for pid in procs.read_text().split()]:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/exe").resolve() == PID1.resolve():
                    status = Path(f"/proc/{pid}/status").read_text()
                    nspid = next(x for x in status.splitlines() if x.startswith("NSpid:"))
                    if nspid.split()[-1] == "1":
                        return int(pid)
        return 0

    def boot_log(self) -> str:
        return ((self.base / "boot.log").read_text(errors="replace")
                + (self.base / "console").read_text(errors="replace"))[-3000:]

    def nsenter(self) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i"]

    def run(self, *argv: str, check: bool = True, timeout: float = 60.0,
            env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.nsenter(), *argv], capture_output=True, text=True,
                              timeout=timeout, check=False, env=env, input=input)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: exit {done.returncode}\n"
                                 f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    def systemctl(self, *args: str, check: bool = True,
                  timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def poweroff(self, timeout: float = 30.0) -> None:
        """``systemctl poweroff``; the namespace is killed if systemd is not gone in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.run("systemctl", "poweroff", "--no-block", check=False, timeout=10)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()

    def _kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return  # unshare has reaped its child: that pid may be someone else's by now
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # PID 1 of a pid namespace: all of it dies
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)

    def _remove_cgroups(self) -> None:
        for _ in range(50):
            leftover = [p for p in self.cgroup.rglob("cgroup.procs") if p.read_text().strip()]
            for procs in leftover:
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            dirs = sorted((p for p in self.cgroup.rglob("*") if p.is_dir()),
                          key=lambda p: len(p.parts), reverse=True)
            with contextlib.suppress(OSError):
                for d in [*dirs, self.cgroup]:
                    d.rmdir()
            if not self.cgroup.exists():
                return
            time.sleep(0.1)
        raise AssertionError(f"could not remove the cgroup {self.cgroup}")

    def close(self) -> None:
        """Power off, then remove every trace: cgroups, mount points, throwaway directories."""
        if self.closed:
            return
        self.closed = True
        try:
            self.poweroff()
            self._kill()
        finally:
            self._remove_cgroups()
            for target, atime, mtime in reversed(self._made):
                target.rmdir()
                os.utime(target.parent, ns=(atime, mtime))
            shutil.rmtree(self.base)
            os.utime(self.base.parent, ns=self._cache_times)
