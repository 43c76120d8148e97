"""The real backend has exactly one handler per plan operation, found in an explicit table."""

from __future__ import annotations

import typing

from netlab.kernel.backend import NetlinkBackend
from netlab.plan import Operation


def test_every_operation_has_a_handler() -> None:
    kinds = set(typing.get_args(Operation))
    assert set(NetlinkBackend.HANDLERS) == kinds
    for kind, handler in NetlinkBackend.HANDLERS.items():
        assert handler.__annotations__["op"] in (kind, kind.__name__), f"{kind.__name__} -> {handler.__name__}"
