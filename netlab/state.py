"""The per-lab state record under /run/netlab: the journal of what a lab created.

``/run/netlab/<lab>.json`` is written *before* the first namespace exists, and each
namespace is appended to ``/run/netlab/<lab>.journal`` (one name a line) before it is
created (write-ahead), so a crash at any point leaves a record that ``netlab down`` /
``netlab clean`` can finish. Appending a line keeps journaling O(1) per namespace, where
rewriting the whole record each time made a 500-container build quadratic. It also keeps the lab's hosts (nodes, pods, ...), so
``down``, ``status`` and ``exec`` work without the topology file, or after it changed.
Ownership is by record, never by name pattern: a namespace no record lists is not ours.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netlab.errors import UsageError
from netlab.names import lab_name_problem
from netlab.plan import Host

DEFAULT_STATE_DIR = "/run/netlab"
_TYPES: dict[str, type | tuple[type, ...]] = {
    "cni": str, "source": str, "status": str, "created": (int, float), "namespaces": list, "hosts": list,
    "notes": list, "topology": dict, "extra": dict,
}


def state_dir() -> Path:
    """Where lab records live; ``NETLAB_STATE_DIR`` overrides it (tests, parallel runs)."""
    return Path(os.environ.get("NETLAB_STATE_DIR", DEFAULT_STATE_DIR))


def lab_file(lab: str, suffix: str) -> Path:
    """``<state dir>/<lab><suffix>``, for a valid lab name only: ``../x`` never becomes a path."""
    problem = lab_name_problem(lab)
    if problem is not None:
        raise UsageError(problem)
    return state_dir() / f"{lab}{suffix}"


@dataclass
class LabState:
    lab: str
    cni: str = ""
    source: str = ""
    status: str = "building"  # building | up
    created: float = field(default_factory=time.time)
    namespaces: list[str] = field(default_factory=list)
    hosts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    topology: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ persistence
    @staticmethod
    def path_for(lab: str) -> Path:
        return lab_file(lab, ".json")

    @staticmethod
    def journal_for(lab: str) -> Path:
        return lab_file(lab, ".journal")

    @property
    def path(self) -> Path:
        return self.path_for(self.lab)

    @property
    def journal(self) -> Path:
        return self.journal_for(self.lab)

    def save(self) -> None:
        state_dir().mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str))
        os.replace(tmp, self.path)

    def delete(self) -> None:
        """Forget the lab: the record first, then the journal (so no half record stays listed)."""
        self.path.unlink(missing_ok=True)
        self.journal.unlink(missing_ok=True)

    @classmethod
    def load(cls, lab: str) -> LabState | None:
        journaled = cls._read_journal(lab)
        try:
            data = json.loads(cls.path_for(lab).read_text())
        except FileNotFoundError:
            # a crash between writing the journal and the record cannot happen (the record is
            # written first), but a journal alone still names namespaces that are ours
            return cls(lab=lab, status="corrupt", namespaces=journaled) if journaled else None
        except (OSError, ValueError):
            return cls(lab=lab, status="corrupt", namespaces=journaled)
        state = cls._from_json(lab, data)
        if state is None:  # valid JSON but not a record of this lab: damaged, not ignored
            return cls(lab=lab, status="corrupt", namespaces=journaled)
        for ns in journaled:
            if ns not in state.namespaces:
                state.namespaces.append(ns)
        return state

    @classmethod
    def _from_json(cls, lab: str, data: Any) -> LabState | None:
        """The record in ``data`` if it is one of lab ``lab`` with fields of the right types."""
        if not isinstance(data, dict):
            return None
        if "endpoints" in data:  # a record written by netlab 0.1.0
            data.setdefault("hosts", data.pop("endpoints"))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("lab") != lab:
            return None
        for name, kind in _TYPES.items():
            if name in known and not isinstance(known[name], kind):
                return None
        if not all(isinstance(ns, str) for ns in known.get("namespaces", [])):
            return None
        if not all(isinstance(h, dict) for h in known.get("hosts", [])):
            return None
        return cls(**known)

    @classmethod
    def namespace_owners(cls, exclude: str = "") -> dict[str, str]:
        """Every namespace any lab's journal or record lists, and the lab that owns it
        (lab ``exclude`` left out): what another lab must not create, adopt or remove."""
        owners: dict[str, str] = {}
        if not state_dir().is_dir():
            return owners
        labs = {p.stem for pattern in ("*.json", "*.journal") for p in state_dir().glob(pattern) if not lab_name_problem(p.stem)} - {exclude}
        for lab in sorted(labs):
            names = cls._read_journal(lab)
            if not names:
                state = cls.load(lab)
                names = state.namespaces if state is not None else []
            for ns in names:
                owners.setdefault(ns, lab)
        return owners

    @classmethod
    def journaled(cls, lab: str) -> list[str]:
        """The namespaces lab ``lab``'s journal lists (its own, whatever its record says)."""
        return cls._read_journal(lab)

    @classmethod
    def _read_journal(cls, lab: str) -> list[str]:
        try:
            text = cls.journal_for(lab).read_text()
        except OSError:
            return []
        return list(dict.fromkeys(line for line in text.splitlines() if line))

    @classmethod
    def all(cls) -> list[LabState]:
        if not state_dir().is_dir():
            return []
        labs = sorted({p.stem for pattern in ("*.json", "*.journal") for p in state_dir().glob(pattern) if not lab_name_problem(p.stem)})
        return [s for s in (cls.load(lab) for lab in labs) if s is not None]

    # ------------------------------------------------------------ journal
    def will_create(self, *names: str) -> None:
        """Record namespaces before they are created (write-ahead): appended lines."""
        if not self.path.exists():
            self.save()
        with open(self.journal, "a") as handle:
            handle.write("".join(ns + "\n" for ns in names))
        self.namespaces.extend(names)

    def forget(self, *names: str) -> None:
        """Drop namespaces from the journal that were never created by us (not attempted, or
        the name was taken by someone else's namespace): rollback must not remove them."""
        drop = set(names)
        self.namespaces = [ns for ns in self.namespaces if ns not in drop]
        self.journal.write_text("".join(ns + "\n" for ns in self.namespaces))
        if self.path.exists():
            self.save()

    # ------------------------------------------------------------ files outside the namespaces
    @staticmethod
    def files_journal_for(lab: str) -> Path:
        return lab_file(lab, ".files")

    def will_write(self, path: str | Path) -> None:
        """Record a file or directory before creating it outside the lab's namespaces
        (``/etc/netns/<ns>/resolv.conf``), write-ahead, so teardown removes it."""
        if not self.path.exists():
            self.save()
        with open(self.files_journal_for(self.lab), "a") as handle:
            handle.write(f"{path}\n")

    def remove_files(self) -> list[str]:
        """Remove the journaled files and (empty) directories, newest first."""
        try:
            entries = self.files_journal_for(self.lab).read_text().splitlines()
        except OSError:
            return []
        removed = []
        for entry in reversed(list(dict.fromkeys(e for e in entries if e))):
            try:
                os.rmdir(entry) if os.path.isdir(entry) else os.unlink(entry)
                removed.append(entry)
            except OSError:
                pass  # already gone, or a directory someone else still uses
        self.files_journal_for(self.lab).unlink(missing_ok=True)
        return removed

    def host_objects(self) -> list[Host]:
        out = []
        for data in self.hosts:
            values = dict(data)
            if values.get("ip"):
                values["ip"] = ipaddress.IPv4Address(values["ip"])
            out.append(Host(**values))
        return out
