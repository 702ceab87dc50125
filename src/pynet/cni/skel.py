"""The CNI plugin skeleton: environment, stdin, dispatch, version gates, errors as spec JSON.

Usage (both ``pynet`` and ``pynet-ipam`` do this)::

    funcs = PluginFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc, status=cmd_status)
    sys.exit(plugin_main(funcs, version.SUPPORTED, about="pynet 0.1.0"))

Order of checks, each answered with the spec's error JSON on stdout and exit status 1, before any
command function runs (so bad input changes nothing):

1. ``CNI_COMMAND`` present and known                      -> code 4 (invalid environment variables)
2. stdin read (code 5) and parsed as a JSON object         -> code 6 (decode); VERSION accepts empty stdin
3. the variables this command requires (``REQUIRED_ENV``)  -> code 4
4. ``CNI_CONTAINERID`` / ``CNI_IFNAME`` syntax              -> code 4
5. ``cniVersion`` supported, and new enough for the command (``version.MIN_VERSION``) -> code 1

Results are rendered in the config's ``cniVersion`` shape. A :class:`CniError` keeps its code; any
other exception becomes code 999 with the exception text (and the traceback goes to stderr).
Invariant: nothing in here touches the kernel; everything is injected (environ and stdio), so the
same function serves the executable, the agent's socket server and unit tests.

Start-up budget: the in-process plugin imports this module on every call, VERSION and bad input
included, so it imports nothing beyond ``json``/``re`` (which VERSION needs anyway), the error codes
and the version table: no ``dataclasses`` (it pulls in ``inspect``, ``ast``, ``dis``: tens of
milliseconds), no ``typing``, no ``traceback`` until an unexpected exception needs it, and not the
result types. :class:`CmdArgs` and :class:`PluginFuncs` are therefore small frozen ``__slots__``
classes instead of dataclasses (same constructor, equality, repr and immutability).
"""

from __future__ import annotations

import json
import os
import re
import sys

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.version import CURRENT, MIN_VERSION, parse_version, version_at_least

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: see "Start-up budget" above
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, BinaryIO, TextIO

    from pynet.cni.types import Result

__all__ = [
    "COMMANDS",
    "IFNAMSIZ",
    "REQUIRED_ENV",
    "CmdArgs",
    "PluginFuncs",
    "parse_cni_args",
    "plugin_main",
    "validate_container_id",
    "validate_ifname",
]

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

#: which CNI_* variables each command needs (CNI_NETNS is optional for DEL; CNI_ARGS always optional)
REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}

#: Linux interface names hold at most 15 bytes (IFNAMSIZ 16 with the NUL)
IFNAMSIZ = 15
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class _Frozen:
    """Frozen value semantics for a ``__slots__`` class (what ``@dataclass(frozen=True)`` would give)."""

    __slots__: tuple[str, ...] = ()

    def _init(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class CmdArgs(_Frozen):
    """One invocation: the CNI_* variables, the raw stdin and the parsed config object.

    ``environ`` is the whole environment the plugin was called with; delegated plugins (IPAM)
    are executed with it, as the spec asks.
    """

    __slots__ = ("command", "container_id", "netns", "ifname", "args", "path", "stdin", "conf", "cni_version",
                 "environ")
    command: str
    container_id: str
    netns: str
    ifname: str
    args: str
    path: tuple[str, ...]
    stdin: bytes
    conf: dict[str, Any]
    cni_version: str
    environ: Mapping[str, str]

    def __init__(self, command: str, container_id: str, netns: str, ifname: str, args: str, path: tuple[str, ...],
                 stdin: bytes, conf: dict[str, Any] | None = None, cni_version: str = CURRENT,
                 environ: Mapping[str, str] | None = None) -> None:
        self._init(command=command, container_id=container_id, netns=netns, ifname=ifname, args=args, path=path,
                   stdin=stdin, conf={} if conf is None else conf, cni_version=cni_version,
                   environ={} if environ is None else environ)


class PluginFuncs(_Frozen):
    """The command functions of a plugin (CHECK, GC and STATUS are optional: no-ops when None)."""

    __slots__ = ("add", "delete", "check", "gc", "status")
    add: Callable[[CmdArgs], Result]
    delete: Callable[[CmdArgs], None]
    check: Callable[[CmdArgs], None] | None
    gc: Callable[[CmdArgs], None] | None
    status: Callable[[CmdArgs], None] | None

    def __init__(self, add: Callable[[CmdArgs], Result], delete: Callable[[CmdArgs], None],
                 check: Callable[[CmdArgs], None] | None = None, gc: Callable[[CmdArgs], None] | None = None,
                 status: Callable[[CmdArgs], None] | None = None) -> None:
        self._init(add=add, delete=delete, check=check, gc=gc, status=status)


def validate_container_id(container_id: str) -> None:
    """Raise CniError(4) unless ``container_id`` is a plain token (no path separators).

    >>> validate_container_id("abc-123_x.y")
    >>> validate_container_id("../etc")
    Traceback (most recent call last):
    ...
    pynet.cni.errors.CniError: invalid CNI_CONTAINERID '../etc'
    """
    if not _CONTAINER_ID.match(container_id):
        raise CniError(ErrCode.INVALID_ENV, f"invalid CNI_CONTAINERID {container_id!r}",
                       "must start with a letter or digit and contain only letters, digits, '_', '.', '-'")


def validate_ifname(ifname: str) -> None:
    """Raise CniError(4) unless ``ifname`` is a valid Linux interface name."""
    why = ""
    if not ifname:
        why = "it is empty"
    elif len(ifname.encode()) > IFNAMSIZ:
        why = f"it is longer than {IFNAMSIZ} characters"
    elif ifname in (".", ".."):
        why = "'.' and '..' are reserved"
    elif any(c == "/" or c == ":" or c.isspace() for c in ifname):
        why = "it contains '/', ':' or whitespace"
    if why:
        raise CniError(ErrCode.INVALID_ENV, f"invalid CNI_IFNAME {ifname!r}: {why}")


def parse_cni_args(args: str) -> dict[str, str]:
    """``"IgnoreUnknown=1;K8S_POD_NAME=x"`` -> dict; raises CniError(4) on a pair without ``=``.

    >>> parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web")
    {'IgnoreUnknown': '1', 'K8S_POD_NAME': 'web'}
    """
    out: dict[str, str] = {}
    for pair in filter(None, args.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(ErrCode.INVALID_ENV, f"invalid CNI_ARGS pair {pair!r}", "expected KEY=VALUE;...")
        out[key] = value
    return out


def _write(stdout: TextIO, obj: dict[str, Any]) -> None:
    stdout.write(json.dumps(obj) + "\n")
    stdout.flush()


def _load_conf(raw: bytes, allow_empty: bool) -> dict[str, Any]:
    if not raw.strip():
        if allow_empty:
            return {}
        raise CniError(ErrCode.DECODE, "no network configuration on stdin")
    try:
        conf = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise CniError(ErrCode.DECODE, "network configuration on stdin is not valid JSON", str(err)) from err
    if not isinstance(conf, dict):
        raise CniError(ErrCode.DECODE, "network configuration on stdin is not a JSON object")
    return conf


def _conf_version(conf: Mapping[str, Any]) -> str:
    # An absent cniVersion means 0.1.0, as libcni's decoder says.
    value = conf.get("cniVersion", "0.1.0")
    if not isinstance(value, str):
        raise CniError(ErrCode.DECODE, "cniVersion must be a string")
    return value


def _dispatch(funcs: PluginFuncs, supported: Sequence[str], environ: Mapping[str, str], raw: bytes,
              stdout: TextIO, state: dict[str, str]) -> None:
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        what = "missing" if not command else f"unknown ({command!r})"
        raise CniError(ErrCode.INVALID_ENV, f"CNI_COMMAND is {what}", f"expected one of {', '.join(COMMANDS)}")
    conf = _load_conf(raw, allow_empty=command == "VERSION")
    version = _conf_version(conf) if conf else CURRENT
    if version in supported:
        state["version"] = version  # errors from here on speak the config's version
    if command == "VERSION":
        _write(stdout, {"cniVersion": state["version"], "supportedVersions": list(supported)})
        return
    missing = [name for name in REQUIRED_ENV[command] if not environ.get(name)]
    if missing:
        raise CniError(ErrCode.INVALID_ENV, f"required environment variables missing for {command}: "
                       + ", ".join(missing))
    container_id = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    if command in ("ADD", "DEL", "CHECK"):
        validate_container_id(container_id)
        validate_ifname(ifname)
    try:
        parse_version(version)
    except ValueError as err:
        raise CniError(ErrCode.DECODE, f"invalid cniVersion {version!r}") from err
    if version not in supported:
        raise CniError(ErrCode.INCOMPATIBLE_VERSION,
                       f"incompatible CNI versions: config is {version}, plugin supports {', '.join(supported)}")
    minimum = MIN_VERSION.get(command)
    if minimum and not version_at_least(version, minimum):
        raise CniError(ErrCode.INCOMPATIBLE_VERSION,
                       f"config version {version} does not allow {command} (needs {minimum} or later)")
    args = CmdArgs(
        command=command,
        container_id=container_id,
        netns=environ.get("CNI_NETNS", ""),
        ifname=ifname,
        args=environ.get("CNI_ARGS", ""),
        path=tuple(p for p in environ.get("CNI_PATH", "").split(os.pathsep) if p),
        stdin=raw,
        conf=conf,
        cni_version=version,
        environ=dict(environ),
    )
    if command == "ADD":
        _write(stdout, funcs.add(args).to_dict(version))
    elif command == "DEL":
        funcs.delete(args)
    else:
        func = {"CHECK": funcs.check, "GC": funcs.gc, "STATUS": funcs.status}[command]
        if func is not None:
            func(args)


def plugin_main(
    funcs: PluginFuncs,
    supported: Sequence[str],
    about: str,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one CNI invocation; return the process exit status (0 ok, 1 error already printed)."""
    environ = os.environ if environ is None else environ
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    state = {"version": CURRENT}
    try:
        try:
            raw = (sys.stdin.buffer if stdin is None else stdin).read()
        except OSError as err:
            raise CniError(ErrCode.IO_FAILURE, "cannot read stdin", str(err)) from err
        if not environ.get("CNI_COMMAND"):
            stderr.write(about + "\n")
        _dispatch(funcs, supported, environ, raw, stdout, state)
        return 0
    except CniError as err:
        stderr.write(f"{about}: error code={err.code} msg={err.msg!r} details={err.details!r}\n")
        _write(stdout, err.to_dict(state["version"]))
        return 1
    except Exception as err:  # noqa: BLE001 - the one boundary that turns anything into spec JSON
        import traceback  # only here: importing it costs every call milliseconds

        traceback.print_exc(file=stderr)
        _write(stdout, CniError(ErrCode.INTERNAL, f"internal error: {err}", type(err).__name__)
               .to_dict(state["version"]))
        return 1
