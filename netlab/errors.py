"""netlab's one exception tree.

Every error a person can see is a :class:`NetlabError`; its message says what went
wrong *and what to do about it*, and its ``exit_code`` is what the CLI exits with::

    NetlabError                      (exit 1)
    ├── TopologyError                (exit 2)  bad input: names the file and the field
    ├── UsageError                   (exit 2)  bad names/arguments on the command line
    ├── EnvironmentProblem           (exit 3)  not root, a kernel feature is missing, a tool is absent
    ├── LabExists / LabNotFound      (exit 1)  lifecycle conflicts
    ├── LabBusy                      (exit 1)  another command is changing the lab (--wait waits)
    ├── NamespaceTaken               (exit 1)  a namespace name belongs to another lab or to someone else
    ├── ConfigRejected               (exit 1)  a daemon (nginx) refused the configuration rendered for it
    ├── ExpectationFailed            (exit 1)  a lab did not behave as expected (``lab.check().raise_for_failures()``)
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


class LabBusy(NetlabError):
    """Another netlab command holds the lab's lock (it is changing the lab right now)."""


class NamespaceTaken(NetlabError):
    """A namespace this run would create belongs to another lab, or exists and is nobody's."""


class ConfigRejected(NetlabError):
    """A daemon netlab runs in a lab (the ingress controller's nginx) refused the configuration
    rendered for it; what it ran before keeps running."""


class ExpectationFailed(NetlabError):
    """A lab was probed and did not behave as expected; the message lists every failing path."""


class TeardownError(NetlabError):
    """Some of a lab could not be removed; its record keeps what is left, for a retry."""


class BuildError(NetlabError):
    """A kernel operation failed while building; what was created has been removed."""

    def __init__(self, op: str, cause: BaseException, rolled_back: int, left: dict[str, BaseException] | None = None, lab: str = "") -> None:
        self.op = op
        self.cause = cause
        self.rolled_back = rolled_back
        self.left = dict(left or {})
        if self.left:
            name, why = next(iter(self.left.items()))
            outcome = (
                f"  rolled back: {rolled_back} namespace(s) removed; {len(self.left)} could not be "
                f"(first: {name}: {why}); they stay in the lab's record: run `netlab down {lab}` to retry"
            )
        else:
            outcome = f"  rolled back: {rolled_back} namespace(s) removed, nothing left behind"
        super().__init__(f"building failed at: {op}\n  cause: {cause}\n{outcome}")
