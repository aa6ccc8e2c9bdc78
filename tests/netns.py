"""Hosts of a multi-host test, each in its own network namespace (``ip netns``).

``Network`` makes a bridge on the host side holding ``10.231.X.1/24`` (X free on
this machine) and, for each ``Host``, a namespace ``ttg-PID-N-hK`` joined to the
bridge by a veth pair, with address ``10.231.X.(10+K)``. Traffic goes only to
the bridge (servers on the host side listen on ``Network.server``) and between
the namespaces: nothing is routed further. A process started on a host runs
in its namespace with the host's name as its hostname (a UTS namespace of its
own), so a worker's id reads ``hK-PID``. ``Host.cut()`` takes the host-side end
of its veth down (packets are dropped, TCP connections stay open and resume
when ``Host.restore()`` brings it back, as on a real network partition);
``Host.kill_all()`` SIGKILLs every process in the namespace.

``Network.close()`` (also on leaving its ``with``) kills every process in the
namespaces and deletes namespaces, veths and bridge, whatever happened before.
Needs root and iproute2.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

_counter = itertools.count(1)


def ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _free_subnet() -> int:
    """An X such that no interface of this machine has an address in 10.231.X.0/24."""
    used = ip("-4", "-o", "addr", "show")
    start = os.getpid() % 200
    for k in range(250):
        x = (start + k) % 250 + 1
        if f" 10.231.{x}." not in used:
            return x
    raise RuntimeError("no free 10.231.X.0/24 subnet for the test network")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class Host:
    """One machine: a network namespace behind a veth pair."""

    def __init__(self, network: Network, label: str, number: int) -> None:
        self.network, self.label = network, label
        self.namespace = f"{network.tag}-{label}"
        self.veth = f"{network.short}v{number}"  # host side, a port of the bridge
        self.peer = f"{network.short}p{number}"  # inside the namespace
        self.addr = f"10.231.{network.subnet}.{10 + number}"

    def _create(self) -> None:
        ip("netns", "add", self.namespace)
        ip("link", "add", self.veth, "type", "veth", "peer", "name", self.peer)
        ip("link", "set", self.peer, "netns", self.namespace)
        ip("link", "set", self.veth, "master", self.network.bridge, "up")
        ip("-n", self.namespace, "addr", "add", f"{self.addr}/24", "dev", self.peer)
        ip("-n", self.namespace, "link", "set", self.peer, "up")
        ip("-n", self.namespace, "link", "set", "lo", "up")

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` run in this host's namespace, with the host's label as hostname
        (each exec keeps the pid: the returned command's pid is that of ``args``)."""
        return ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "--", "sh", "-c",
                'hostname "$0" && exec "$@"', self.label, *args]

    def run(self, args: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(args), capture_output=True, text=True, timeout=timeout)

    def popen(self, args: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(args), **kwargs)  # type: ignore[call-overload, no-any-return]

    def pids(self) -> list[int]:
        """Every live process in the namespace (zombies not counted)."""
        return [p for p in map(int, ip("netns", "pids", self.namespace, check=False).split()) if _alive(p)]

    def kill_all(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL every process of the host (the whole machine dies at once), again
        until none is left (one may have forked meanwhile); returns their pids."""
        killed: list[int] = []
        end = time.monotonic() + timeout
        while pids := self.pids():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                if pid not in killed:
                    killed.append(pid)
            if time.monotonic() > end:
                raise RuntimeError(f"processes {pids} of {self.namespace} survive SIGKILL")
            time.sleep(0.01)
        return killed

    def cut(self) -> None:
        """Unplug the host's cable: its packets are dropped until ``restore``."""
        ip("link", "set", self.veth, "down")

    def restore(self) -> None:
        ip("link", "set", self.veth, "up")

    def _delete(self) -> None:
        self.kill_all()
        ip("netns", "del", self.namespace, check=False)  # destroys the peer, hence the pair
        ip("link", "del", self.veth, check=False)


class Network:
    """A bridge on the host side and hosts in namespaces behind it (see the module docstring)."""

    def __init__(self, hosts: int = 3) -> None:
        n = next(_counter)
        self.tag = f"ttg-{os.getpid()}-{n}"
        self.short = f"t{os.getpid() % 100000}{n % 100}"  # interface names: 15 characters at most
        self.bridge = f"{self.short}b"
        self.subnet = _free_subnet()
        #: the host side's address, where its servers listen
        self.server = f"10.231.{self.subnet}.1"
        self.hosts = [Host(self, f"h{k}", k) for k in range(1, hosts + 1)]
        self._made: list[Host] = []
        self._bridge_made = False

    def create(self) -> Network:
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            self._bridge_made = True
            ip("addr", "add", f"{self.server}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for host in self.hosts:
                self._made.append(host)
                host._create()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for host in self._made:
            host._delete()
        self._made.clear()
        if self._bridge_made:
            ip("link", "del", self.bridge, check=False)
            self._bridge_made = False

    def __enter__(self) -> Network:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()
