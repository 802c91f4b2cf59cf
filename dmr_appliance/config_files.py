"""Reading and writing configuration files: a config dataclass from TOML layers plus
``DMR_*`` overrides, and every setting back as TOML (the defaults file, the local stack's
files). Generic over the dataclasses of ``config``; errors name the source, key and rule.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from dmr_appliance.errors import ConfigError

T = TypeVar("T")


def load(
    cls: type[T], path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> T:
    """Read ``cls`` from a TOML file (optional), then apply ``DMR_*`` overrides."""
    return load_layers(cls, [] if path is None else [Path(path)], environ)


def load_layers(cls: type[T], paths: list[Path], environ: Mapping[str, str] | None = None) -> T:
    """As ``load``, from several files: each later file's keys replace the earlier ones'
    (table by table), e.g. a site's few settings over a shared profile."""
    data: dict[str, Any] = {}
    for path in paths:
        data = merge(data, read_toml(Path(path)))
    source = " + ".join(str(p) for p in paths) or "defaults"
    config = build(cls, data, source=source, prefix=())
    return apply_environment(config, os.environ if environ is None else environ)


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: tables merge key by key, any other value replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create it or pass --config)") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied (run as the dmr user or root)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def build(cls: type[T], data: Mapping[str, Any], *, source: str, prefix: tuple[str, ...]) -> T:
    """Build dataclass ``cls`` from a TOML table, refusing unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = ".".join((*prefix, unknown[0]))
        raise ConfigError(f"{source}: unknown key '{where}' (known: {', '.join(sorted(fields))})")
    values = {}
    for name, value in data.items():
        key = ".".join((*prefix, name))
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{key}' must be a table ([{key}])")
            values[name] = build(kind, value, source=source, prefix=(*prefix, name))
        else:
            values[name] = convert(value, kind, source=source, key=key, f=fields[name])
    return cls(**values)


def convert(value: Any, kind: Any, *, source: str, key: str, f: dataclasses.Field) -> Any:
    """Check a value's type (ints are accepted for floats) and run the field's check."""
    if kind is Path:
        ok, value = isinstance(value, str), Path(value) if isinstance(value, str) else value
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typing.get_origin(kind) is list:
        if isinstance(value, str) and f.metadata.get("one_or_list"):
            value = [value]
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        what = "a string or " if f.metadata.get("one_or_list") else ""
        raise ConfigError(f"{source}: '{key}' must be {what}{type_name(kind)}, not {value!r}")
    check = f.metadata.get("check")
    problem = check(value) if check else None
    if problem:
        shown = str(value) if isinstance(value, Path) else value
        raise ConfigError(f"{source}: '{key}' = {shown!r}: {problem}")
    return value


def type_name(kind: Any) -> str:
    if typing.get_origin(kind) is list:
        return "a list of strings"
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        Path: "a path (string)",
    }
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def apply_environment(config: T, environ: Mapping[str, str]) -> T:
    """Overlay ``DMR_<KEY>`` / ``DMR_<TABLE>_<KEY>`` variables, parsed per field type."""
    changes: dict[str, Any] = {}
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            table = getattr(config, f.name)
            overrides = env_for(kind, environ, f"DMR_{f.name.upper()}_")
            if overrides:
                changes[f.name] = dataclasses.replace(table, **overrides)
        elif (var := f"DMR_{f.name.upper()}") in environ:
            changes[f.name] = from_env(environ[var], kind, var=var, f=f)
    return dataclasses.replace(config, **changes) if changes else config  # type: ignore[type-var]


def env_for(cls: type, environ: Mapping[str, str], prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    found = {}
    for f in dataclasses.fields(cls):
        var = prefix + f.name.upper()
        if var in environ:
            found[f.name] = from_env(environ[var], hints[f.name], var=var, f=f)
    return found


def from_env(text: str, kind: Any, *, var: str, f: dataclasses.Field) -> Any:
    value: Any = text
    try:
        if kind is int:
            value = int(text)
        elif kind is float:
            value = float(text)
        elif kind is bool:
            value = {"true": True, "1": True, "false": False, "0": False}[text.lower()]
        elif typing.get_origin(kind) is list:
            value = [item.strip() for item in text.split(",") if item.strip()]
    except (ValueError, KeyError):
        raise ConfigError(f"environment: {var}={text!r} must be {type_name(kind)}") from None
    return convert(value, kind, source="environment", key=var, f=f)


def describe(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(key, default, help) for every setting: the source of the documented defaults."""
    rows: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            rows += describe(kind, f"{prefix}{f.name}.")
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        rows.append((prefix + f.name, default, f.metadata.get("help", "")))
    return rows


def defaults_toml(cls: type, title: str) -> str:
    """A commented TOML file listing every setting at its default (for /etc conffiles)."""
    lines = [
        f"# {title}",
        "# Every key is shown at its default, commented out. Uncomment to change;",
        "# DMR_<KEY> or DMR_<TABLE>_<KEY> in the environment overrides this file.",
        "",
    ]
    table = ""
    for key, default, help_text in describe(cls):
        section, _, name = key.rpartition(".")
        if section != table:
            table = section
            lines += ["", f"[{section}]"]
        if help_text:
            lines.append(f"# {help_text}")
        lines.append(f"# {name} = {toml_value(default)}")
    return "\n".join(lines) + "\n"


def to_toml(settings: Any) -> str:
    """Every setting of a config dataclass as TOML, read back by ``load`` (the local stack
    and the tests write their files with it)."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            tables.append((f.name, value))
        else:
            lines.append(f"{f.name} = {toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]"]
        lines += [
            f"{f.name} = {toml_value(getattr(table, f.name))}" for f in dataclasses.fields(table)
        ]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
