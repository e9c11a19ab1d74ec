"""Settings: ``loopml.toml`` (found by walking up from the current directory) plus
``LOOPML_*`` environment variables, which win, plus explicit arguments, which win over both.

A workspace folder looks like::

    project/
      loopml.toml          # committed
      .loopml/loopml.db    # metadata (SQLite, WAL)
      .loopml/blobs/       # content-addressed blobs

``loopml.toml`` has one table per area, each a typed frozen dataclass declared in its area
(:class:`~loopml.tracking.settings.TrackingSettings`, :class:`~loopml.data.settings.DataSettings`,
:class:`~loopml.registry.settings.RegistrySettings`, …)::

    [store]
    url = "sqlite:///.loopml/loopml.db"   # relative paths are relative to this file
    [artifacts]
    url = ".loopml/blobs"                 # any fsspec URL: s3://bucket/prefix, memory://x
    [tracking]
    flush_interval = 1.0                  # seconds between background metric flushes
    [gates.churn]                         # any number of named gate policies
    metric = "accuracy"

Every value is checked when the file is loaded: an error names the file, the table and the
key (an unknown key or table gets "did you mean …"). Every key that is not a table can be
overridden by ``LOOPML_<SECTION>_<KEY>`` (``LOOPML_TRACKING_FLUSH_INTERVAL=0.5``, a list as
``LOOPML_DATA_LINK=copy,hardlink``, a boolean as ``true``/``false``/``1``/``0``).
``LOOPML_FLUSH_INTERVAL`` still works, deprecated. ``LOOPML_TRACKING_URI`` is another name of
``LOOPML_STORE_URL`` (the name MLflow users expect): ``LOOPML_TRACKING_URI=http://host:5000``
makes the workspace a loopml server (:mod:`loopml.client`), which gets ``LOOPML_TOKEN`` as
``Authorization: Bearer``. :attr:`Settings.sources` records where
each value came from (``loopml config show`` prints it).

A section is a frozen dataclass of bool, int, float, str, ``str | None``, ``tuple[str, ...]``
and ``Mapping`` fields; a field's ``metadata`` may hold ``min``/``above`` (bounds), ``unit``,
``help``, ``nonempty`` and ``parse`` (a function of the value and where it came from), and a
section may define ``problem()`` for a check across its keys. A new area adds its section to
:data:`SECTIONS`.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

from loopml.data.settings import DataSettings
from loopml.exceptions import InvalidConfig, WorkspaceNotFound
from loopml.features.settings import FeaturesSettings
from loopml.llm.prompts.settings import PromptsSettings
from loopml.monitoring.settings import MonitorSettings
from loopml.registry.settings import RegistrySettings
from loopml.server.settings import ServerSettings
from loopml.serving.settings import ServingSettings
from loopml.tracking.settings import TrackingSettings

CONFIG_FILE = "loopml.toml"
STATE_DIR = ".loopml"
DEFAULT_STORE = f"sqlite:///{STATE_DIR}/loopml.db"
DEFAULT_ARTIFACTS = f"{STATE_DIR}/blobs"

DEFAULT_TOML = f"""\
# loopml workspace. Relative paths are relative to this file.
# LOOPML_STORE_URL and LOOPML_ARTIFACTS_URL override the two URLs below;
# LOOPML_<SECTION>_<KEY> overrides any other key. `loopml config show` prints the result.

[store]
# Metadata database: SQLite by default; postgresql+psycopg://user@host/db for teams.
url = "{DEFAULT_STORE}"

[artifacts]
# Content-addressed blob store: a folder by default; s3://bucket/prefix for teams.
url = "{DEFAULT_ARTIFACTS}"

[tracking]
# Seconds between background flushes of buffered metrics (at most this much is lost on SIGKILL).
flush_interval = 1.0
"""

#: Where a value came from, in :attr:`Settings.sources` (else the name of the variable).
DEFAULT, FILE, ARGUMENT = "default", CONFIG_FILE, "argument"
DEPRECATED_ENV = {"LOOPML_FLUSH_INTERVAL": "LOOPML_TRACKING_FLUSH_INTERVAL"}
#: Other names of a variable, not deprecated (the variable itself wins when both are set).
ALIAS_ENV = {"LOOPML_TRACKING_URI": "LOOPML_STORE_URL"}
#: The API token loopml's client sends to a loopml server (``Authorization: Bearer``).
TOKEN_ENV = "LOOPML_TOKEN"


@dataclass(frozen=True)
class StoreSettings:
    """``[store]``: the metadata database."""

    url: str = field(
        default=DEFAULT_STORE,
        metadata={
            "nonempty": True,
            "help": "metadata database: sqlite:///path or postgresql+psycopg://…",
        },
    )


@dataclass(frozen=True)
class ArtifactsSettings:
    """``[artifacts]``: the content-addressed blob store."""

    url: str = field(
        default=DEFAULT_ARTIFACTS,
        metadata={
            "nonempty": True,
            "help": "blob store: a folder, or any fsspec URL (s3://bucket/prefix)",
        },
    )


def _names(value: Any, where: str) -> tuple[str, ...]:
    """A list of names, or one string of comma-separated names (a variable's value)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise InvalidConfig(f"{where} must be a list of strings, got {value!r}")
    return tuple(item.strip() for item in items if item.strip())


@dataclass(frozen=True)
class SchedulerSettings:
    """``[scheduler]``: the pipelines ``loopml scheduler run`` watches when none is named.

    Declared here rather than in ``loopml/pipelines/``: importing that package loads the
    whole pipelines engine (and SQLAlchemy), too much for reading a settings file.
    """

    pipelines: tuple[str, ...] = field(
        default=(),
        metadata={
            "parse": _names,
            "help": "pipeline references (path/to/file.py:name or package.module:name)",
        },
    )


#: Every table ``loopml.toml`` may hold, besides the ``[gates.NAME]`` policies.
SECTIONS: dict[str, type] = {
    "store": StoreSettings,
    "artifacts": ArtifactsSettings,
    "tracking": TrackingSettings,
    "data": DataSettings,
    "registry": RegistrySettings,
    "scheduler": SchedulerSettings,
    "features": FeaturesSettings,
    "serving": ServingSettings,
    "monitor": MonitorSettings,
    "server": ServerSettings,
    "prompts": PromptsSettings,
}
#: Tables of named tables, each checked by the area that reads it (``[gates.churn]``:
#: :meth:`loopml.registry.gates.GatePolicy.from_dict`).
NAMED_TABLES = ("gates",)
#: Tables kept as written and checked by the area that reads them (``[gateway]``, with its
#: model groups, deployments and teams: :meth:`loopml.llm.config.GatewayConfig.from_dict`).
RAW_TABLES = ("gateway",)
# The old flat names of the tracking settings, kept readable on Settings.
_TRACKING_NAMES = ("flush_interval", "flush_max_points", "capture_environment")


@dataclass(frozen=True)
class Settings:
    """Where a workspace keeps its facts and bytes, and each area's section of ``loopml.toml``.

    >>> settings = load_settings("path/to/project")          # doctest: +SKIP
    >>> settings.tracking.flush_interval, settings.data.link  # doctest: +SKIP
    (1.0, ('reflink', 'hardlink', 'copy'))
    """

    root: Path
    store_url: str
    artifacts_url: str
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    data: DataSettings = field(default_factory=DataSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    features: FeaturesSettings = field(default_factory=FeaturesSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    prompts: PromptsSettings = field(default_factory=PromptsSettings)
    #: ``[gates.NAME]`` tables as written; each is checked when it is used
    #: (:meth:`loopml.registry.gates.GatePolicy.from_dict`) or by ``loopml config show``.
    gates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``[gateway]`` as written (the LLM gateway's models, keys and limits); checked by
    #: :meth:`loopml.llm.config.GatewayConfig.from_dict` when the gateway loads it.
    gateway: Mapping[str, Any] = field(default_factory=dict)
    #: The ``loopml.toml`` these settings were read from (None: URLs and variables only).
    config_path: Path | None = field(default=None, compare=False)
    #: ``"section.key"`` → where its value came from: ``"default"``, ``"loopml.toml"``,
    #: ``"argument"`` or the ``LOOPML_…`` variable's name.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    # -- the flat names of earlier versions, read-only ------------------------------------

    @property
    def flush_interval(self) -> float:
        """Same as ``tracking.flush_interval``."""
        return self.tracking.flush_interval

    @property
    def flush_max_points(self) -> int:
        """Same as ``tracking.flush_max_points``."""
        return self.tracking.flush_max_points

    @property
    def capture_environment(self) -> bool:
        """Same as ``tracking.capture_environment``."""
        return self.tracking.capture_environment

    @property
    def extra(self) -> dict[str, Any]:
        """Deprecated: the area tables as plain dicts; read ``settings.data``,
        ``settings.registry``, ``settings.scheduler`` and ``settings.gates`` instead."""
        tables: dict[str, Any] = {
            name: _plain(getattr(self, name)) for name in ("data", "registry", "scheduler")
        }
        tables["gates"] = _plain(self.gates)
        return tables

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values replaced (None: keep), recorded as from an ``argument``.

        Takes the fields (``store_url=``, ``tracking=TrackingSettings(…)``) and the
        tracking settings by their flat names (``flush_interval=0.2``), checked like the file's.
        """
        known = [f.name for f in fields(self) if f.name not in ("sources", "config_path")]
        top: dict[str, Any] = {}
        tracking: dict[str, Any] = {}
        sources = dict(self.sources)
        for key, value in changes.items():
            if value is None:
                continue
            if key in _TRACKING_NAMES:
                spec = _spec(TrackingSettings)[key]
                tracking[key] = _convert(spec, value, f"{key}=", from_env=False)
                sources[f"tracking.{key}"] = ARGUMENT
            elif key in known:
                top[key] = value
                if key in ("store_url", "artifacts_url"):
                    sources[f"{key.removesuffix('_url')}.url"] = ARGUMENT
            else:
                valid = [*known, *_TRACKING_NAMES]
                raise InvalidConfig(f"Unknown setting {key!r}{_did_you_mean(key, valid)}")
        if tracking:
            top["tracking"] = replace(top.get("tracking", self.tracking), **tracking)
        return replace(self, **top, sources=sources)

    def effective(self) -> Iterator[tuple[str, Any, str]]:
        """Every effective setting as ``("section.key", value, source)``: the values are
        plain (lists, dicts), the URLs resolved, the sources as in :attr:`sources`; a secret
        (a field with ``metadata={"secret": True}``: passwords, API keys) shows as ``***``."""
        for section, cls in SECTIONS.items():
            for spec in _spec(cls).values():
                key = f"{section}.{spec.name}"
                if section in ("store", "artifacts"):
                    value: Any = getattr(self, f"{section}_url")
                else:
                    value = _plain(getattr(getattr(self, section), spec.name))
                if spec.metadata.get("secret"):
                    value = _masked(value)
                yield key, value, self.sources.get(key, DEFAULT)
        for name, table in self.gates.items():
            key = f"gates.{name}"
            yield key, _plain(table), self.sources.get(key, FILE)


def _masked(value: Any) -> Any:
    """A secret as shown: ``***`` for each value set, so one sees that it is set, not what."""
    if isinstance(value, list):
        return ["***" for _ in value]
    return None if value in (None, "") else "***"


def _plain(value: Any) -> Any:
    """``value`` as TOML/JSON would hold it: tuples as lists, mappings and dataclasses as dicts."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


# -- one typed section ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """What a section's field accepts: its kind, bounds and an optional custom parser."""

    name: str
    kind: str  # bool, int, float, str, list (of str), table
    optional: bool
    metadata: Mapping[str, Any]

    @property
    def parse(self) -> Callable[[Any, str], Any] | None:
        return self.metadata.get("parse")

    @property
    def from_env(self) -> bool:
        return self.kind != "table"


@cache
def _spec(cls: type) -> dict[str, _Spec]:
    hints = typing.get_type_hints(cls)
    return {f.name: _field_spec(f, hints[f.name]) for f in fields(cls)}


def _field_spec(f: Field[Any], hint: Any) -> _Spec:
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    origin = typing.get_origin(hint) or hint
    kinds = {bool: "bool", int: "int", float: "float", str: "str", tuple: "list"}
    kind = kinds.get(origin) or (
        "table" if isinstance(origin, type) and issubclass(origin, Mapping) else None
    )
    if kind is None:
        raise TypeError(f"{f.name}: settings fields are bool, int, float, str, tuple or Mapping")
    return _Spec(f.name, kind, optional, f.metadata)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(spec: _Spec, value: Any, where: str, *, from_env: bool) -> Any:
    """``value`` (from the file, an argument or, ``from_env``, a variable's text) as the
    field's type; ``where`` names it in the error."""
    if spec.parse is not None:
        return spec.parse(value, where)
    kind = spec.kind
    given = value  # quoted in the error as the user wrote it
    if from_env and isinstance(value, str):
        text = value.strip()
        if kind == "bool":
            if text.lower() not in _TRUE | _FALSE:
                raise InvalidConfig(f"{where} must be true or false (or 1/0), got {value!r}")
            value = text.lower() in _TRUE
        elif kind in ("int", "float"):
            try:
                value = int(text) if kind == "int" else float(text)
            except ValueError:
                raise InvalidConfig(f"{where} must be {_expected(spec)}, got {value!r}") from None
        elif kind == "list":
            value = [item.strip() for item in text.split(",") if item.strip()]
    ok = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: (
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        ),
        "str": lambda v: isinstance(v, str),
        "list": lambda v: isinstance(v, list | tuple) and all(isinstance(i, str) for i in v),
        "table": lambda v: isinstance(v, Mapping),
    }[kind]
    low, above = spec.metadata.get("min"), spec.metadata.get("above")
    if not ok(value) or (low is not None and value < low) or (above is not None and value <= above):
        raise InvalidConfig(f"{where} must be {_expected(spec)}, got {given!r}")
    if kind == "str" and spec.metadata.get("nonempty") and not value.strip():
        raise InvalidConfig(f"{where} must not be empty")
    if kind == "float":
        return float(value)
    if kind == "list":
        return tuple(value)
    return value


def _expected(spec: _Spec) -> str:
    low, above = spec.metadata.get("min"), spec.metadata.get("above")
    if spec.kind in ("int", "float"):
        what = "a whole number" if spec.kind == "int" else "a number"
        if above == 0:
            what = "a positive " + what.removeprefix("a ")
        elif above is not None:
            what += f" above {above}"
        if low is not None:
            what += f", at least {low}"
        unit = spec.metadata.get("unit")
        return f"{what} of {unit}" if unit else what
    return {
        "bool": "true or false",
        "str": "a string",
        "list": "a list of strings",
        "table": "a table",
    }[spec.kind]


def _did_you_mean(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return f"{hint} Valid: {', '.join(valid)}."


def _env_name(section: str, key: str) -> str:
    return f"LOOPML_{section.upper()}_{key.upper()}"


def _check_variables(env: Mapping[str, str]) -> None:
    """A ``LOOPML_<SECTION>_…`` variable of a known section must name one of its keys that
    a variable can set: a mistyped one is an error, not silently ignored."""
    for section, cls in SECTIONS.items():
        prefix = f"LOOPML_{section.upper()}_"
        specs = {name.upper(): spec for name, spec in _spec(cls).items()}
        for variable in env:
            if not variable.startswith(prefix) or not env[variable] or variable in ALIAS_ENV:
                continue
            spec = specs.get(variable.removeprefix(prefix))
            if spec is None:
                settable = [key for key, s in specs.items() if s.from_env]
                close = difflib.get_close_matches(variable.removeprefix(prefix), settable, n=1)
                hint = f"; did you mean {prefix}{close[0]}?" if close else "."
                raise InvalidConfig(
                    f"{variable} is not a loopml setting{hint} `loopml config show` lists "
                    "the settings; the variable for [section] key is LOOPML_SECTION_KEY."
                )
            if not spec.from_env:
                raise InvalidConfig(
                    f"{variable}: [{section}] {spec.name} is a table and can't be set from a "
                    f"variable; write it in {CONFIG_FILE}."
                )


def _load_section(
    section: str,
    table: Mapping[str, Any],
    where: str,
    env: Mapping[str, str],
    sources: dict[str, str],
) -> Any:
    """The typed section ``section`` from its ``table`` in the file (``where`` names the file)
    and its ``LOOPML_<SECTION>_<KEY>`` variables."""
    cls = SECTIONS[section]
    specs = _spec(cls)
    for key in table:
        if key not in specs:
            raise InvalidConfig(
                f"{where} [{section}]: unknown key {key!r}{_did_you_mean(key, list(specs))}"
            )
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, spec in specs.items():
        if name in table:
            origin[name] = f"{where} [{section}] {name}"
            values[name] = _convert(spec, table[name], origin[name], from_env=False)
            sources[f"{section}.{name}"] = FILE
        variable = _env_name(section, name)
        aliases = [old for old, new in DEPRECATED_ENV.items() if new == variable]
        other_names = [alias for alias, same in ALIAS_ENV.items() if same == variable]
        for candidate in (variable, *other_names, *aliases):
            if spec.from_env and env.get(candidate):
                if candidate in aliases:
                    # FutureWarning, not DeprecationWarning: whoever sets a variable runs
                    # the program, and Python hides DeprecationWarning from them.
                    warnings.warn(
                        f"{candidate} is deprecated: set {variable} instead.",
                        FutureWarning,
                        stacklevel=2,
                    )
                values[name] = _convert(spec, env[candidate], candidate, from_env=True)
                origin[name] = sources[f"{section}.{name}"] = candidate
                break
    settings = cls(**values)
    problem = getattr(settings, "problem", None)
    found = problem() if problem is not None else None
    if found is not None:
        key, message = found
        raise InvalidConfig(f"{origin.get(key, f'[{section}] {key}')}: {message}")
    return settings


# -- the file ------------------------------------------------------------------------------


def find_config(start: Path | None = None) -> Path | None:
    """Return the nearest ``loopml.toml`` at or above ``start`` (default: cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def _resolve_store_url(url: str, root: Path) -> str:
    # sqlite:///relative/path is relative to the workspace root, not to the cwd.
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith(("file:", ":memory:")):
            return prefix + str((root / rest).resolve())
    return url


def _resolve_artifacts_url(url: str, root: Path) -> str:
    if "://" in url:
        if url.startswith("file://"):
            return str(Path(url[len("file://") :]).resolve())
        return url
    path = Path(url)
    return str(path if path.is_absolute() else (root / path).resolve())


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"{path} is not valid TOML: {exc}. Fix the file or delete it.") from exc
    except UnicodeDecodeError as exc:
        raise InvalidConfig(
            f"{path} is not UTF-8 text (byte {exc.start} is not valid UTF-8): TOML files must "
            "be UTF-8. Save it as UTF-8 and try again."
        ) from exc
    except OSError as exc:
        raise InvalidConfig(f"Cannot read {path}: {exc.strerror or exc}.") from exc


def _check_tables(data: Mapping[str, Any], where: str) -> None:
    """Every top-level entry is a known table; ``[gates]`` is a table of tables."""
    valid = [*SECTIONS, *RAW_TABLES, *(f"{name}.NAME" for name in NAMED_TABLES)]
    for name, value in data.items():
        if name not in SECTIONS and name not in NAMED_TABLES and name not in RAW_TABLES:
            close = difflib.get_close_matches(name, [*SECTIONS, *RAW_TABLES, *NAMED_TABLES], n=1)
            hint = f"; did you mean [{close[0]}]?" if close else "."
            raise InvalidConfig(
                f"{where}: unknown table [{name}]{hint} Valid: "
                + ", ".join(f"[{v}]" for v in valid)
                + "."
            )
        if not isinstance(value, dict):
            raise InvalidConfig(f"{where}: [{name}] must be a table, got {value!r}")
        if name in NAMED_TABLES:
            for key, table in value.items():
                if not isinstance(table, dict):
                    raise InvalidConfig(
                        f"{where}: [{name}] must hold named tables ([{name}.{key}] with its "
                        f"settings below it), got {key} = {table!r}"
                    )


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    store_url: str | None = None,
    artifacts_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings for the workspace at ``path`` (a folder or a ``loopml.toml``), or discovered.

    Explicit arguments beat ``LOOPML_<SECTION>_<KEY>`` variables (``LOOPML_STORE_URL``,
    ``LOOPML_ARTIFACTS_URL``, …), which beat the file, which beats the defaults.
    """
    env = os.environ if environ is None else environ
    store_url = store_url or None
    artifacts_url = artifacts_url or None
    env_store = env.get("LOOPML_STORE_URL") or env.get("LOOPML_TRACKING_URI") or None

    config_path: Path | None
    if path is not None:
        p = Path(path).expanduser()
        config_path = p if p.name == CONFIG_FILE else p / CONFIG_FILE
        if not config_path.is_file():
            if (store_url or env_store) is None and not p.is_dir():
                raise WorkspaceNotFound(
                    f"No workspace at {p}: the folder does not exist. "
                    f"Create one with `loopml init {p}`."
                )
            if (store_url or env_store) is None:
                raise WorkspaceNotFound(
                    f"No {CONFIG_FILE} in {p}. Create a workspace there with `loopml init {p}`."
                )
            config_path = None
        root = (config_path.parent if config_path else p).resolve()
    else:
        config_path = find_config()
        if config_path is None and (store_url or env_store) is None:
            raise WorkspaceNotFound(
                f"No {CONFIG_FILE} in {Path.cwd()} or any folder above it, and LOOPML_STORE_URL "
                "is not set. Run `loopml init` to create a workspace here."
            )
        root = config_path.parent.resolve() if config_path else Path.cwd().resolve()

    data = _read_toml(config_path) if config_path else {}
    return _settings(root, data, config_path, env, store_url, artifacts_url)


def parse_config(text: str, path: Path, *, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings ``text`` gives as the ``loopml.toml`` at ``path`` (checked the same way):
    how a writer of the file checks its new content before replacing the file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidConfig(f"{path} would not be valid TOML: {exc}.") from exc
    env = os.environ if environ is None else environ
    return _settings(path.parent.resolve(), data, path, env, None, None)


def url_settings(
    store_url: str,
    artifacts_url: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings for a workspace named by URLs only (no ``loopml.toml``, root: the cwd).

    Without ``artifacts_url`` (or ``LOOPML_ARTIFACTS_URL``), a SQLite store keeps its blobs in
    a ``blobs`` folder beside the database file, and a loopml server (``http(s)://``) keeps
    them on the server.
    """
    env = os.environ if environ is None else environ
    artifacts_url = artifacts_url or None
    if artifacts_url is None and not env.get("LOOPML_ARTIFACTS_URL"):
        if store_url.startswith(("http://", "https://")):
            artifacts_url = store_url
        elif store_url.startswith("sqlite:///") and store_url != "sqlite:///:memory:":
            artifacts_url = str(Path(store_url[len("sqlite:///") :]).parent / "blobs")
        else:
            raise InvalidConfig(
                f"Opening {store_url} needs artifacts_url= too (a folder or s3://bucket/prefix)."
            )
    return _settings(Path.cwd().resolve(), {}, None, env, store_url, artifacts_url)


def _settings(
    root: Path,
    data: Mapping[str, Any],
    config_path: Path | None,
    env: Mapping[str, str],
    store_url: str | None,
    artifacts_url: str | None,
) -> Settings:
    where = str(config_path or root / CONFIG_FILE)
    _check_tables(data, where)
    _check_variables(env)
    sources: dict[str, str] = {}
    sections = {
        name: _load_section(name, data.get(name, {}), where, env, sources) for name in SECTIONS
    }
    for name in NAMED_TABLES:
        for key in data.get(name, {}):
            sources[f"{name}.{key}"] = FILE
    store, artifacts = sections.pop("store").url, sections.pop("artifacts").url
    if store_url is not None:
        store, sources["store.url"] = store_url, ARGUMENT
    if artifacts_url is not None:
        artifacts, sources["artifacts.url"] = artifacts_url, ARGUMENT
    return Settings(
        root=root,
        store_url=_resolve_store_url(store, root),
        artifacts_url=_resolve_artifacts_url(artifacts, root),
        gates=dict(data.get("gates", {})),
        gateway=dict(data.get("gateway", {})),
        config_path=config_path,
        sources=sources,
        **sections,
    )


def ensure_state_dir(folder: Path) -> Path:
    """Create ``folder/.loopml/`` with the ``.gitignore`` that keeps it out of git."""
    state = folder / STATE_DIR
    state.mkdir(exist_ok=True)
    gitignore = state / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")
    return state


def write_default_config(folder: Path) -> Path:
    """Create ``loopml.toml`` and ``.loopml/`` in ``folder``; keep an existing file as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    ensure_state_dir(folder)
    path = folder / CONFIG_FILE
    if not path.exists():
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(DEFAULT_TOML)
        os.replace(tmp, path)
    return path
