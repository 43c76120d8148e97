"""Reading topology files: YAML in, a validated :class:`~netlab.model.topology.Topology` out.

Every problem becomes a :class:`~netlab.errors.TopologyError` naming the file and the field
(``topologies/x.yaml: nodes[1].pods[0].name: ...``); :func:`from_pydantic` does the same for
the other schemas built on pydantic (scenarios, manifests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from netlab.errors import TopologyError
from netlab.model.topology import Problem, Topology


def read_text(path: str | Path) -> str:
    """A YAML file's text; one that cannot be read, or is not UTF-8, is a :class:`TopologyError` naming it."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TopologyError(source, "", f"cannot read the file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TopologyError(
            source, f"line {line}", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): YAML files must be UTF-8"
        ) from None


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file; raise :class:`TopologyError` naming file and field."""
    return parse_topology(read_text(path), str(path))


def parse_topology(text: str | dict[str, Any], source: str = "<topology>") -> Topology:
    """Validate YAML text (or an already-parsed mapping) into a :class:`Topology`."""
    if isinstance(text, str):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise TopologyError(source, where, f"not valid YAML: {problem}") from None
        except RecursionError:  # PyYAML's parser recurses once per nesting level
            raise TopologyError(source, "", "not valid YAML: the document nests too deeply") from None
    else:
        data = text
    if not isinstance(data, dict):
        raise TopologyError(source, "", "expected a mapping with keys name, network, nodes")
    try:
        return Topology.model_validate(data)
    except Problem as problem:
        raise TopologyError(source, problem.field, problem.message) from None
    except ValidationError as exc:
        raise from_pydantic(exc, source) from None
    except RecursionError:
        raise TopologyError(source, "", "the document nests too deeply") from None


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('nodes', 1, 'pods', 0, 'name')`` -> ``nodes[1].pods[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out




def _model_at(loc: tuple[int | str, ...], root: type[BaseModel] | None = None) -> type[BaseModel] | None:
    model: Any = root or Topology
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            for name, info in model.model_fields.items():
                if info.alias == part:
                    field = model.model_fields[name]
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ()) or (annotation,)
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return None
    return model


def from_pydantic(exc: ValidationError, source: str, root: type[BaseModel] | None = None) -> TopologyError:
    """The first pydantic error as a TopologyError naming ``source`` and the field path."""
    error = exc.errors()[0]
    loc = tuple(part for part in error["loc"] if part not in ("function-after", "function-before"))
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = _model_at(loc[:-1], root)
        valid = sorted(info.alias or name for name, info in owner.model_fields.items()) if owner else []
        message = f"unknown key {loc[-1]!r}" + (f"; valid keys: {', '.join(valid)}" if valid else "")
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "value_error":
        message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    elif kind in ("ip_v4_network", "ip_v4_address"):
        message = f"{error.get('input')!r} is not a valid IPv4 CIDR (e.g. 192.168.1.0/24, host bits zero)"
    else:
        message = error["msg"]
        if "input" in error and not isinstance(error["input"], (dict, list)):
            message += f" (got {error['input']!r})"
    count = exc.error_count()
    if count > 1:
        message += f" (and {count - 1} more problem{'s' if count > 2 else ''})"
    return TopologyError(source, field_path(loc), message)
