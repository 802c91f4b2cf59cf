"""What the container tests share: how docker runs systemd as PID 1 here.

TESTBED.md: every capability but SYS_RESOURCE, no seccomp filter, /run and /run/lock on
tmpfs, the host's cgroup tree, SIGRTMIN+3 to stop; not --privileged. The Molecule
scenarios say the same in their molecule.yml (YAML, which cannot import this).
"""

from __future__ import annotations

SYSTEMD_FLAGS = [
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--cgroupns=host",
    "--stop-signal",
    "SIGRTMIN+3",
]
