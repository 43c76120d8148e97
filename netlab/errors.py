"""netlab's one exception tree.

Every error a person can see is a :class:`NetlabError`; its message says what went
wrong *and what to do about it*, and its ``exit_code`` is what the CLI exits with::

    NetlabError                      (exit 1)
    ├── TopologyError                (exit 2)  bad input: names the file and the field
    ├── UsageError                   (exit 2)  bad names/arguments on the command line
    ├── EnvironmentProblem           (exit 3)  not root, a kernel feature is missing, a tool is absent
    ├── LabExists / LabNotFound      (exit 1)  lifecycle conflicts
    └── BuildError                   (exit 1)  an operation failed; everything created was rolled back
"""

from __future__ import annotations


class NetlabError(Exception):
    """Base of every error netlab raises on purpose."""

    exit_code = 1


class TopologyError(NetlabError):
    """An invalid topology or scenario file. Nothing has been built."""

    exit_code = 2

    def __init__(self, source: str, field: str, message: str) -> None:
        self.source = source
        self.field = field
        self.message = message
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {message}")


class UsageError(NetlabError):
    """A bad argument on the command line (unknown lab, target, ...)."""

    exit_code = 2


class EnvironmentProblem(NetlabError):
    """The machine cannot do what was asked (not root, missing kernel feature or tool)."""

    exit_code = 3


class LabExists(NetlabError):
    """A lab of that name is already up."""


class LabNotFound(NetlabError):
    """No lab of that name is up."""


class BuildError(NetlabError):
    """A kernel operation failed while building; what was created has been removed."""

    def __init__(self, op: str, cause: BaseException, rolled_back: int) -> None:
        self.op = op
        self.cause = cause
        self.rolled_back = rolled_back
        super().__init__(
            f"building failed at: {op}\n  cause: {cause}\n"
            f"  rolled back: {rolled_back} namespace(s) removed, nothing left behind"
        )
