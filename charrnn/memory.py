"""How much memory this process may use: the tightest of the machine's free memory, its cgroup's
memory limit (a container's) and its address-space limit (`ulimit -v`).

Each limit is a ceiling on this process's own size, so that it compares with an estimate of the
process's peak (charrnn.sizing): what the others in its group use is taken off, what the process
holds already is not.

- MemAvailable (/proc/meminfo): the machine's free memory, plus this process's resident size.
- cgroup v2 (/proc/self/cgroup's "0::/path", under /sys/fs/cgroup, or /sys/fs/cgroup/unified):
  memory.max less memory.current, at the process's group and at every group above it ("max":
  no limit). Inside a container the group's path may not exist under the mount (it shows the
  container's own group at its root): the groups that exist are read.
- cgroup v1 ("N:memory:/path", under /sys/fs/cgroup/memory): memory.limit_in_bytes less
  memory.usage_in_bytes, the same way (a limit of 2**62 or more, usually 2**63 less a page, is none).
  In both, the usage is taken without the inactive page cache (memory.stat's inactive_file): the
  kernel reclaims it before it kills, as the kubelet counts a container's working set.
- RLIMIT_AS (`ulimit -v`): a limit on the process's virtual size, not its resident size, and
  TensorFlow reserves far more address space than it touches (thread stacks, malloc arenas, its
  allocator's regions, which double as they grow). So it is compared with an estimate of the
  virtual peak (sizing.address_space_bytes), never with the resident one: the ceiling is the
  limit itself, the process's whole virtual size.
"""

from dataclasses import dataclass
from pathlib import Path

# cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit number; anything from
# here on is no limit.
HUGE = 1 << 62


@dataclass(frozen=True)
class Limit:
    """One limit on this process: `ceiling`, the most bytes the process as a whole may reach under
    it; `kind`, what it limits ("resident" memory or "virtual" address space); `source`, how a
    message names it; `fix`, what to change to lift it."""

    ceiling: int
    kind: str
    source: str
    fix: str


def limits(proc="/proc", cgroup_root="/sys/fs/cgroup", rlimit_as=None):
    """Every limit that applies to this process, [Limit]. `proc` and `cgroup_root` are where
    /proc and the cgroup mounts are read (tests point them at fake files); `rlimit_as` the soft
    RLIMIT_AS in bytes (None: this process's own; negative: none)."""
    proc, cgroup_root = Path(proc), Path(cgroup_root)
    resident = _fields(proc / "self" / "status").get("VmRSS", 0)
    found = []
    free = _fields(proc / "meminfo").get("MemAvailable")
    if free is not None:
        found.append(Limit(free + resident, "resident", FREE_MEMORY, "free some memory"))
    groups = _groups(proc / "self" / "cgroup")
    for version, mount, (limit_file, usage_file) in _MOUNTS:
        room = _cgroup_room(cgroup_root / mount, groups[version], limit_file, usage_file) if version in groups else None
        if room is not None:
            fix = f"raise the container's memory limit (docker run --memory, or the group's {limit_file})"
            found.append(Limit(room + resident, "resident", CGROUP_LIMIT.format(limit_file), fix))
    rlimit_as = _own_rlimit_as() if rlimit_as is None else rlimit_as
    if rlimit_as is not None and rlimit_as >= 0:
        found.append(Limit(rlimit_as, "virtual", ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_FIX))
    return found


# How the messages name each limit ("more than the 2.0 GB that ... leaves"), and what lifts the last.
FREE_MEMORY = "available (MemAvailable: what this machine has free now)"
CGROUP_LIMIT = "that this container's memory limit (cgroup {}) leaves"
ADDRESS_SPACE_LIMIT = "that the address-space limit (ulimit -v, RLIMIT_AS) allows"
ADDRESS_SPACE_FIX = "raise ulimit -v or lift it (ulimit -v unlimited; TensorFlow reserves address space that it never touches)"
# cgroup v2 at the root of the mount, or beside the v1 mounts (a hybrid layout); v1's memory controller.
_MOUNTS = (
    ("v2", "", ("memory.max", "memory.current")),
    ("v2", "unified", ("memory.max", "memory.current")),
    ("v1", "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")),
)


def _groups(path):
    """{"v2": path, "v1": path} of the process's groups, from /proc/self/cgroup: v2's line is
    "0::/path", the v1 memory controller's "N:memory:/path" (or "N:memory,other:/path")."""
    groups = {}
    for line in _read(path).splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, group = parts
        if number == "0" and controllers == "":
            groups["v2"] = group
        elif "memory" in controllers.split(","):
            groups["v1"] = group
    return groups


def _cgroup_room(mount, group, limit_file, usage_file):
    """The least room (limit less usage) in the group `group` and every group above it under
    `mount`, of those that exist and set a limit; None when none does."""
    parts = [p for p in group.strip("/").split("/") if p not in ("", ".", "..")]
    rooms = []
    for depth in range(len(parts), -1, -1):
        directory = mount.joinpath(*parts[:depth])
        limit = _number(directory / limit_file)
        if limit is None or limit >= HUGE:
            continue
        usage = _number(directory / usage_file)
        if usage is None:
            continue
        stat = _fields(directory / "memory.stat", scale=1)
        # v1 counts the group's children in its usage and in total_inactive_file; v2 in both.
        reclaimable = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        rooms.append(max(0, limit - max(0, usage - reclaimable)))
    return min(rooms, default=None)


def _own_rlimit_as():
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def _number(path):
    """The number a cgroup file holds; None if it is missing, unreadable or "max"."""
    text = _read(path).strip()
    return int(text) if text.isdigit() else None


def _fields(path, scale=1024):
    """{name: value} of a "Name: 123 kB" file (/proc/meminfo, /proc/self/status) in bytes, or
    of a cgroup memory.stat ("name 123", scale 1)."""
    fields = {}
    for line in _read(path).splitlines():
        words = line.replace(":", " ").split()
        if len(words) >= 2 and words[1].isdigit():
            fields[words[0]] = int(words[1]) * scale
    return fields


def _read(path):
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def tightest(found, need):
    """The Limit of `found` that leaves the least room for a process that needs `need`
    ({"resident": bytes, "virtual": bytes}): the one with the smallest ceiling for its need,
    as a share of it; None when `found` is empty."""
    return min(found, key=lambda limit: limit.ceiling / max(1, need[limit.kind]), default=None)

