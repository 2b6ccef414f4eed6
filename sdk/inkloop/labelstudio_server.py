"""A local Label Studio server for development and tests, plus the project's labeling config.

Why this module exists: review tasks go to Label Studio, and the integration tests want a *real*
server, not a mock. Running one offline and unattended has traps (see PLATFORM_NOTES), and the
shell scripts in ``labeling/``, the CLI and the pytest fixture must all avoid them the same way,
so the logic lives here once:

- Label Studio pins Django and friends, so it lives in its own venv (``ensure_venv``), never in
  the SDK's environment. Nothing here imports ``label_studio`` or ``label_studio_sdk``.
- It silently moves to the next port when the asked one is busy; a client would then talk to
  whatever owns the asked port. ``start`` checks the port first and fails loudly instead, and
  checks afterwards that the server really listens where it was asked to.
- It reads un-prefixed ``HOST``/``PORT``/``USERNAME``/``PASSWORD`` (and ``DEBUG``, ``DJANGO_DB``,
  ...) as fallbacks; the child gets a cleaned environment with every setting spelled out.
- The admin user and its legacy API token are created only on the first start of an empty data
  dir, which takes about 90 s of migrations. The initialised data dir is kept as a *template*
  (``$REPO/.cache/labelstudio-template``) and copied on later first starts, which then take a few
  seconds. A template is only reused for the same Label Studio version and credentials.
- ``stop`` ends only the process it started (its PID, from the handle or the pid file, in its own
  process group), never anything found by name.
- The API token is a secret: it goes to the child through the environment (not argv, which
  ``ps`` shows) and never into an exception message or a repr.

Defaults (each overridable by an environment variable, shell scripts and CLI alike):

==========================  ==========================================  =============================
setting                     default                                     environment variable
==========================  ==========================================  =============================
venv                        ``$REPO/.venv-labelstudio``                 ``INKLOOP_LS_VENV``
port                        ``8080``                                    ``INKLOOP_LS_PORT``
data dir                    ``$REPO/.cache/labelstudio``                ``INKLOOP_LS_DATA``
template data dir           ``$REPO/.cache/labelstudio-template``       ``INKLOOP_LS_TEMPLATE``
local-files document root   ``$REPO``                                   ``INKLOOP_LS_DOCUMENT_ROOT``
admin user (e-mail)         ``admin@inkloop.local``                     ``INKLOOP_LS_USERNAME``
admin password              ``inkloop-dev-password``                    ``INKLOOP_LS_PASSWORD``
legacy API token            ``inkloop-dev-token`` (more than 5 chars)   ``INKLOOP_LS_TOKEN``
==========================  ==========================================  =============================

``$REPO`` is ``INKLOOP_REPO`` if set, else the checkout this file lives in (editable install),
else the current directory. The defaults are for a laptop: change the password and token for
anything reachable by others (the server only ever binds 127.0.0.1 here).

Command line (what ``labeling/setup.sh``, ``start.sh`` and ``stop.sh`` call)::

    python -m inkloop.labelstudio_server setup            # create the venv, install Label Studio
    python -m inkloop.labelstudio_server start [--port N] # start, wait until ready, print URL + token
    python -m inkloop.labelstudio_server stop             # stop the server of the pid file
    python -m inkloop.labelstudio_server status
    python -m inkloop.labelstudio_server config signature initials   # print a labeling config
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import html
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

LABEL_STUDIO_VERSION = "1.23.2"
DEFAULT_PORT = 8080
DEFAULT_USERNAME = "admin@inkloop.local"
DEFAULT_PASSWORD = "inkloop-dev-password"
DEFAULT_TOKEN = "inkloop-dev-token"
READY_TIMEOUT = 300.0  # a first start on an empty data dir migrates for about 90 s on 2 cores
STOP_TIMEOUT = 20.0
HOST = "127.0.0.1"

PID_FILE_NAME = "labelstudio.pid"
LOG_FILE_NAME = "labelstudio.log"
STATE_FILE_NAME = "labelstudio.json"
DB_FILE_NAME = "label_studio.sqlite3"
TEMPLATE_META_NAME = "inkloop-template.json"
# Files of ours inside a data dir: never copied into a template.
_RUNTIME_FILES = {PID_FILE_NAME, LOG_FILE_NAME, STATE_FILE_NAME, TEMPLATE_META_NAME}

# Environment variables Label Studio reads as fallbacks or that would steer the child somewhere
# else than asked. They are removed from the child's environment; what we need is set explicitly.
_STRIPPED_ENV = {
    "HOST",
    "PORT",
    "USERNAME",
    "PASSWORD",
    "USER_TOKEN",
    "DEBUG",
    "DJANGO_DB",
    "DATABASE_NAME",
    "DJANGO_SETTINGS_MODULE",
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "__PYVENV_LAUNCHER__",
}
_STRIPPED_ENV_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_")

# Label colours for the labeling config, cycled; distinct on a grey scan.
_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")

_BUILTIN_INSTRUCTIONS = """\
# Reviewing detections

- Correct the model's boxes rather than drawing new ones.
- Draw tight boxes around the ink of each signature, initials included.
- Delete boxes that are not signatures.
- No signature on the page: submit with no boxes (a valuable negative).
- Skip a page only when it is unreadable.
"""


class LabelStudioServerError(RuntimeError):
    """Something about the local Label Studio server went wrong. Never carries the API token."""


class SetupError(LabelStudioServerError):
    """The Label Studio venv could not be created or installed."""


class PortInUseError(LabelStudioServerError):
    """The asked port is taken; Label Studio would silently have moved to another one."""


class ServerNotReadyError(LabelStudioServerError, TimeoutError):
    """The server did not answer in time, or exited while starting."""


class TokenRejectedError(LabelStudioServerError):
    """The server answers but refuses the token (a data dir initialised with other credentials)."""


# --------------------------------------------------------------------------------------------
# Locations


def repo_root() -> Path:
    """The checkout the defaults are relative to: ``INKLOOP_REPO``, this file's checkout, or cwd."""
    env = os.environ.get("INKLOOP_REPO")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file() and (here / "sdk" / "inkloop").is_dir():
        return here
    return Path.cwd().resolve()


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def default_venv() -> Path:
    return _env_path("INKLOOP_LS_VENV", repo_root() / ".venv-labelstudio")


def default_data_dir() -> Path:
    return _env_path("INKLOOP_LS_DATA", repo_root() / ".cache" / "labelstudio")


def default_template_dir() -> Path:
    return _env_path("INKLOOP_LS_TEMPLATE", repo_root() / ".cache" / "labelstudio-template")


def default_document_root() -> Path:
    return _env_path("INKLOOP_LS_DOCUMENT_ROOT", repo_root())


def default_port() -> int:
    value = os.environ.get("INKLOOP_LS_PORT")
    return int(value) if value else DEFAULT_PORT


def default_username() -> str:
    return os.environ.get("INKLOOP_LS_USERNAME") or DEFAULT_USERNAME


def default_password() -> str:
    return os.environ.get("INKLOOP_LS_PASSWORD") or DEFAULT_PASSWORD


def default_token() -> str:
    return os.environ.get("INKLOOP_LS_TOKEN") or DEFAULT_TOKEN


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


# --------------------------------------------------------------------------------------------
# The venv


def installed_version(venv: Path | None = None) -> str | None:
    """The Label Studio version importable in ``venv``, or None (no venv, broken install)."""
    python = venv_python(venv or default_venv())
    if not python.exists():
        return None
    try:
        out = subprocess.run(
            [str(python), "-c", "import label_studio; print(label_studio.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
            env=_clean_python_env(os.environ),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock, so two test sessions or scripts never install into one venv at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _base_python() -> str:
    """The interpreter to create the venv from: the one behind ours, so versions match."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_venv(
    venv: Path | None = None, version: str = LABEL_STUDIO_VERSION, *, quiet: bool = False
) -> Path:
    """Make ``venv`` hold ``label-studio==version``; idempotent, a no-op when it already does.

    Plain ``pip install``: the machine's pip config (constraints, local indexes) applies. Raises
    :class:`SetupError` (the caller decides whether that fails a test run: it should) when the
    venv cannot be created or the install does not end with the right version importable.
    """
    venv = (venv or default_venv()).resolve()
    if installed_version(venv) == version and _lock_applied(venv):
        return venv
    try:
        _install(venv, version, quiet=quiet)
    except OSError as exc:
        raise SetupError(f"could not set up the Label Studio venv {venv}: {exc}") from None
    return venv


def _install(venv: Path, version: str, *, quiet: bool) -> None:
    with _file_lock(venv.with_name(venv.name + ".lock")):
        if installed_version(venv) == version and _lock_applied(venv):  # another process did it
            return
        out = None if not quiet else subprocess.DEVNULL
        env = _clean_python_env(os.environ)
        if not venv_python(venv).exists():
            _run_setup([_base_python(), "-m", "venv", str(venv)], env, out, "create the venv")
        lock, uv = lock_file(), _uv()
        if lock is not None and uv is not None:
            cmd = [uv, "pip", "sync", "--python", str(venv_python(venv)), "--compile-bytecode"]
            cmd += [*_local_wheel_args(), str(lock)]
            _run_setup(cmd, env, out, f"uv pip sync {lock.name}")
        elif lock is not None:
            cmd = [str(venv_python(venv)), "-m", "pip", "install", "-r", str(lock)]
            _run_setup(cmd, env, out, f"pip install -r {lock.name}")
        else:
            cmd = [str(venv_python(venv)), "-m", "pip", "install", f"label-studio=={version}"]
            _run_setup(cmd, env, out, f"pip install label-studio=={version}")
        got = installed_version(venv)
        if got != version:
            raise SetupError(f"after installing, {venv} has label-studio {got!r}, not {version!r}")
        if lock is not None:
            _lock_stamp(venv).write_text(_lock_digest(lock) + "\n")


# The repository's own environments install from lock files (``make lock`` refreshes them), so
# a fresh machine gets exactly the versions CI last tested; a pip-installed inkloop has no lock
# and installs ``label-studio==LABEL_STUDIO_VERSION`` with whatever that resolves to.


def lock_file() -> Path | None:
    """``requirements/labelstudio.lock`` of this checkout, or None outside a checkout."""
    path = repo_root() / "requirements" / "labelstudio.lock"
    return path if path.is_file() else None


def _lock_digest(lock: Path) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def _lock_stamp(venv: Path) -> Path:
    return venv / ".inkloop-lock"


def _lock_applied(venv: Path) -> bool:
    """True when the venv was synced from the current lock (or there is no lock to follow)."""
    lock = lock_file()
    if lock is None:
        return True
    stamp = _lock_stamp(venv)
    return stamp.is_file() and stamp.read_text().strip() == _lock_digest(lock)


def _uv() -> str | None:
    """uv, which installs a locked set in seconds: ``$INKLOOP_UV``, the repo's bootstrap, or PATH."""
    for candidate in (os.environ.get("INKLOOP_UV"), str(repo_root() / ".venv-uv" / "bin" / "uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("uv")


def _local_wheel_args() -> list[str]:
    """``--find-links`` for the machine's local wheel folders (uv ignores pip's configuration)."""
    folders = os.environ.get("INKLOOP_FIND_LINKS", "")  # colon-separated; the Makefile sets it
    return [arg for d in folders.split(":") if d and Path(d).is_dir() for arg in ("--find-links", d)]


def _run_setup(cmd: list[str], env: dict[str, str], out: Any, what: str) -> None:
    try:
        result = subprocess.run(cmd, env=env, stdout=out, stderr=out, check=False)
    except OSError as exc:
        raise SetupError(f"could not {what}: {exc}") from None
    if result.returncode != 0:
        raise SetupError(f"could not {what} (exit code {result.returncode}); see the output above")


def _clean_python_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what would make another venv's python import our packages."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"}
    return {k: v for k, v in environ.items() if k not in drop}


# --------------------------------------------------------------------------------------------
# Ports and processes


def free_port(host: str = HOST) -> int:
    """A port the kernel considers free right now (bind to port 0), for tests and parallel runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when Label Studio would get ``port`` as asked, by its own test and by the kernel's.

    Label Studio's test is a connect to ``localhost:port``; Django then binds with SO_REUSEADDR.
    Both are mirrored, so a port in TIME_WAIT counts as free (it is) and a listener on any
    address that would clash counts as busy.
    """
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                if s.connect_ex((addr, port)) == 0:
                    return False
        except OSError:
            pass  # no IPv6 on this machine
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has exited already


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_label_studio(pid: int) -> bool:
    """Whether ``pid`` is a ``label-studio start`` process, so a reused PID is never killed."""
    cmd = _cmdline(pid)
    return any("label-studio" in part or "label_studio" in part for part in cmd) and "start" in cmd


def _process_group(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` (the server and any helper it spawned)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def _decode_proc_addr(hex_addr: str) -> tuple[str, int]:
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
    return ip, int(port_hex, 16)


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """TCP (address, port) pairs that ``pid``'s process group listens on, read from /proc.

    Why not just connect: a connect to 127.0.0.1 cannot tell "bound to 127.0.0.1" from "bound to
    0.0.0.0", and only the latter exposes the server to the network.
    """
    inodes: set[str] = set()
    for member in _process_group(pid) or [pid]:
        fd_dir = Path(f"/proc/{member}/fd")
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: list[tuple[str, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                found.append(_decode_proc_addr(cols[1]))
    return sorted(set(found))


# --------------------------------------------------------------------------------------------
# Readiness


def _redact(text: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _http_get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``; (status, body). Raises OSError (URLError) when nothing answers."""
    headers = {"Authorization": f"Token {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read() if exc.fp else b""


def _log_tail(log_file: Path | None, secrets: Sequence[str | None], lines: int = 30) -> str:
    if log_file is None or not log_file.exists():
        return ""
    try:
        tail = log_file.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return _redact("\n".join(tail), secrets)


def wait_ready(
    url: str,
    timeout: float = READY_TIMEOUT,
    *,
    token: str | None = None,
    process: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
    interval: float = 0.5,
) -> None:
    """Block until ``url``'s ``/health/`` answers ``UP`` (and ``token`` is accepted, if given).

    Raises :class:`ServerNotReadyError` on timeout or when ``process`` exits first (its log tail
    included, token redacted), and :class:`TokenRejectedError` when the server refuses the token.
    No message ever contains the token, nor a raw urllib error that might echo request headers.
    """
    base = url.rstrip("/")
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    while True:
        if process is not None and process.poll() is not None:
            tail = _log_tail(log_file, [token])
            raise ServerNotReadyError(
                f"Label Studio exited with code {process.returncode} before {base} was ready"
                + (f"; last lines of {log_file}:\n{tail}" if tail else "")
            )
        try:
            status, body = _http_get(f"{base}/health/", timeout=min(5.0, max(timeout, 0.1)))
            if status == 200 and b"UP" in body:
                break
            last_problem = f"/health/ answered HTTP {status}"
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            last_problem = f"{type(exc).__name__}: {_redact(str(reason), [token])}"
        if time.monotonic() >= deadline:
            raise ServerNotReadyError(
                f"Label Studio at {base} not ready after {timeout:.0f} s ({last_problem})"
            )
        time.sleep(interval)
    if token is not None:
        try:
            status, _ = _http_get(f"{base}/api/current-user/whoami", token=token)
        except OSError as exc:
            raise ServerNotReadyError(
                f"Label Studio at {base} stopped answering ({type(exc).__name__})"
            ) from None
        if status in (401, 403):
            raise TokenRejectedError(
                f"Label Studio at {base} rejects the API token (HTTP {status}); was its data dir "
                "initialised with other credentials? Use a fresh data dir or the matching token."
            )
        if status != 200:
            raise ServerNotReadyError(f"Label Studio at {base}: /api/current-user/whoami gave {status}")


# --------------------------------------------------------------------------------------------
# Template data dir


def _fingerprint(version: str, username: str, password: str, token: str) -> str:
    """What a template's database depends on; hashed, so the metadata file holds no secret."""
    raw = "\0".join([version, username, password, token, "legacy-token-enabled"])
    return hashlib.sha256(raw.encode()).hexdigest()


def _template_usable(template_dir: Path, fingerprint: str) -> bool:
    try:
        meta = json.loads((template_dir / TEMPLATE_META_NAME).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("fingerprint") == fingerprint and (template_dir / DB_FILE_NAME).is_file()


def _copy_data_dir(src: Path, dst: Path) -> None:
    """Copy a Label Studio data dir; the sqlite file through sqlite's backup API.

    Why the backup API: the source may belong to a running server, and a plain file copy of a
    database being written can be torn; ``Connection.backup`` gives a consistent snapshot.
    """
    dst.mkdir(parents=True, exist_ok=True)
    os.chmod(dst, 0o700)
    for item in src.iterdir():
        if item.name in _RUNTIME_FILES or item.name.startswith(DB_FILE_NAME):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, dst / item.name)
    src_db = src / DB_FILE_NAME
    if src_db.exists():
        with (
            contextlib.closing(sqlite3.connect(f"file:{src_db}?mode=ro", uri=True)) as s,
            contextlib.closing(sqlite3.connect(dst / DB_FILE_NAME)) as d,
        ):
            s.backup(d)


def save_template(data_dir: Path, template_dir: Path, fingerprint: str) -> bool:
    """Keep an initialised ``data_dir`` as the template; atomic, safe against a parallel writer.

    Returns False (and leaves things as they are) when another process saved one first or the
    copy failed: a missing template only costs time, never correctness.
    """
    template_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = template_dir.with_name(f"{template_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _copy_data_dir(data_dir, tmp)
        meta = {
            "fingerprint": fingerprint,
            "label_studio": LABEL_STUDIO_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": str(data_dir),
        }
        (tmp / TEMPLATE_META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        if template_dir.exists():
            if _template_usable(template_dir, fingerprint):
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            old = template_dir.with_name(f"{template_dir.name}.old-{os.getpid()}")
            os.replace(template_dir, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, template_dir)
        return True
    except (OSError, sqlite3.Error):
        shutil.rmtree(tmp, ignore_errors=True)
        return False


# --------------------------------------------------------------------------------------------
# Start / stop


@dataclass
class LabelStudioHandle:
    """A running server: where it is, how to authenticate, and what to stop. The token is kept
    out of ``repr`` so test failures and logs do not print it."""

    url: str
    token: str = field(repr=False)
    pid: int
    port: int
    data_dir: Path
    document_root: Path
    pid_file: Path
    log_file: Path
    username: str = DEFAULT_USERNAME
    started_in: float = 0.0  # seconds from launch to ready
    used_template: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        return stop(self, timeout=timeout)

    def __enter__(self) -> LabelStudioHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _child_env(
    *,
    data_dir: Path,
    document_root: Path,
    username: str,
    password: str,
    token: str,
    venv: Path,
    extra_env: Mapping[str, str] | None,
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _STRIPPED_ENV and not k.startswith(_STRIPPED_ENV_PREFIXES)
    }
    env.update(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_DATABASE_NAME": str(data_dir / DB_FILE_NAME),
            "LABEL_STUDIO_DJANGO_DB": "sqlite",
            "LABEL_STUDIO_DEBUG": "false",
            "LABEL_STUDIO_USERNAME": username,
            "LABEL_STUDIO_PASSWORD": password,
            "LABEL_STUDIO_USER_TOKEN": token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
            "SSRF_PROTECTION_ENABLED": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if extra_env:
        env.update(extra_env)
    return env


def _read_pid_file(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_state(data_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((data_dir / STATE_FILE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def running_server(data_dir: Path | None = None) -> tuple[int, str] | None:
    """(pid, url) of the Label Studio server of ``data_dir``'s pid file, if it still runs."""
    data_dir = (data_dir or default_data_dir()).resolve()
    pid = _read_pid_file(data_dir / PID_FILE_NAME)
    if pid is None or not _pid_alive(pid) or not _is_label_studio(pid):
        return None
    return pid, str(_read_state(data_dir).get("url", ""))


def start(
    port: int | None = None,
    data_dir: Path | str | None = None,
    token: str | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    venv: Path | None = None,
    document_root: Path | str | None = None,
    template_dir: Path | str | None = None,
    use_template: bool = True,
    timeout: float = READY_TIMEOUT,
    extra_env: Mapping[str, str] | None = None,
) -> LabelStudioHandle:
    """Start Label Studio on 127.0.0.1:``port`` with ``data_dir``; return once it is usable.

    Usable means: ``/health/`` answers, the token is accepted, and the server's own process
    listens on exactly 127.0.0.1:``port``. The venv must exist (:func:`ensure_venv`). The server
    runs in its own session/process group, so it outlives a CLI call and :func:`stop` can end
    it and any helper it spawned without touching anything else. On failure the child is
    stopped before the error propagates.
    """
    port = default_port() if port is None else int(port)
    data_dir = Path(data_dir).resolve() if data_dir else default_data_dir()
    token = token or default_token()
    username = username or default_username()
    password = password or default_password()
    venv = (venv or default_venv()).resolve()
    document_root = Path(document_root).resolve() if document_root else default_document_root()
    template = Path(template_dir).resolve() if template_dir else default_template_dir()
    if len(token) <= 5:
        # Label Studio ignores such a token silently and prints it; refuse it here instead.
        raise LabelStudioServerError("the API token must be longer than 5 characters")
    executable = venv / "bin" / "label-studio"
    if not executable.exists():
        raise SetupError(f"no Label Studio in {venv}; run labeling/setup.sh (or ensure_venv())")

    existing = running_server(data_dir)
    if existing is not None:
        raise LabelStudioServerError(
            f"a Label Studio server already runs for {data_dir} (pid {existing[0]}, "
            f"{existing[1] or 'unknown url'}); stop it first (labeling/stop.sh)"
        )
    if not port_is_free(port):
        raise PortInUseError(
            f"port {port} on {HOST} is in use; Label Studio would silently move to another "
            "port. Free it or choose another (INKLOOP_LS_PORT / --port)."
        )

    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    document_root.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(LABEL_STUDIO_VERSION, username, password, token)
    fresh = not (data_dir / DB_FILE_NAME).exists()
    used_template = False
    if fresh and use_template and _template_usable(template, fingerprint):
        _copy_data_dir(template, data_dir)
        used_template = True

    url = f"http://{HOST}:{port}"
    pid_file = data_dir / PID_FILE_NAME
    log_file = data_dir / LOG_FILE_NAME
    env = _child_env(
        data_dir=data_dir,
        document_root=document_root,
        username=username,
        password=password,
        token=token,
        venv=venv,
        extra_env=extra_env,
    )
    cmd = [str(executable), "start", "--no-browser", "--internal-host", HOST, "--port", str(port)]
    started = time.monotonic()
    with open(log_file, "ab") as log:
        log.write(f"\n=== inkloop: starting Label Studio on {url} at {datetime.now(UTC)} ===\n".encode())
        log.flush()
        process = subprocess.Popen(
            cmd,
            env=env,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() ends it and only it
        )
    pid_file.write_text(f"{process.pid}\n")
    (data_dir / STATE_FILE_NAME).write_text(
        json.dumps({"pid": process.pid, "url": url, "port": port, "username": username}) + "\n"
    )
    handle = LabelStudioHandle(
        url=url,
        token=token,
        pid=process.pid,
        port=port,
        data_dir=data_dir,
        document_root=document_root,
        pid_file=pid_file,
        log_file=log_file,
        username=username,
        used_template=used_template,
        _process=process,
    )
    try:
        wait_ready(url, timeout, token=token, process=process, log_file=log_file)
        listening = listening_addresses(process.pid)
        if listening and listening != [(HOST, port)]:
            raise LabelStudioServerError(f"Label Studio listens on {listening}, not only on {HOST}:{port}")
    except BaseException:
        stop(handle)
        raise
    handle.started_in = time.monotonic() - started
    if fresh and not used_template and use_template:
        save_template(data_dir, template, fingerprint)
    return handle


def stop(target: LabelStudioHandle | Path | str | None = None, *, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the server of a handle, a data dir (its pid file) or a pid file; default: the default data dir.

    Only that PID's process group is signalled (SIGTERM, then SIGKILL after ``timeout``), and
    only if the PID still is a ``label-studio start`` process, so a stale pid file can never
    kill an unrelated process that reused the number. Returns whether a server was stopped.
    """
    process: subprocess.Popen[bytes] | None = None
    if isinstance(target, LabelStudioHandle):
        pid: int | None = target.pid
        pid_file = target.pid_file
        process = target._process
    else:
        path = Path(target).resolve() if target else default_data_dir()
        pid_file = path if path.is_file() else path / PID_FILE_NAME  # a pid file or a data dir
        pid = _read_pid_file(pid_file)
    if pid is None:
        return False
    if not _pid_alive(pid) or not _is_label_studio(pid):
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        _remove_runtime_files(pid_file, pid)
        return False
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, process, timeout):
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, process, 10.0)
    _remove_runtime_files(pid_file, pid)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal ``pid``'s group when it leads one (we started it so), else ``pid`` alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            try:
                process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
        if not _pid_alive(pid) and not [p for p in _process_group(pid) if _pid_alive(p)]:
            return True
        time.sleep(0.2)
    return False


def _remove_runtime_files(pid_file: Path, pid: int) -> None:
    """Remove the pid file (and state file) only if they still name ``pid``."""
    if _read_pid_file(pid_file) == pid:
        with contextlib.suppress(OSError):
            pid_file.unlink()
        state_file = pid_file.with_name(STATE_FILE_NAME)
        with contextlib.suppress(OSError):
            if json.loads(state_file.read_text()).get("pid") == pid:
                state_file.unlink()


@dataclass
class LabelStudioServer:
    """One local server's settings, resolved once from arguments and ``INKLOOP_LS_*`` variables.

    Used by the CLI and scripts; tests may use it or the functions directly. The token is kept
    out of ``repr``.
    """

    port: int = field(default_factory=default_port)
    data_dir: Path = field(default_factory=default_data_dir)
    token: str = field(default_factory=default_token, repr=False)
    username: str = field(default_factory=default_username)
    password: str = field(default_factory=default_password, repr=False)
    venv: Path = field(default_factory=default_venv)
    document_root: Path = field(default_factory=default_document_root)
    template_dir: Path = field(default_factory=default_template_dir)
    timeout: float = READY_TIMEOUT
    handle: LabelStudioHandle | None = field(default=None, repr=False)

    def setup(self, *, quiet: bool = False) -> Path:
        return ensure_venv(self.venv, quiet=quiet)

    def start(self) -> LabelStudioHandle:
        self.handle = start(
            self.port,
            self.data_dir,
            self.token,
            username=self.username,
            password=self.password,
            venv=self.venv,
            document_root=self.document_root,
            template_dir=self.template_dir,
            timeout=self.timeout,
        )
        return self.handle

    def stop(self) -> bool:
        return stop(self.handle if self.handle is not None else self.data_dir)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


# --------------------------------------------------------------------------------------------
# Labeling config and instructions


def labeling_config(class_names: Sequence[str], *, header: str | None = None) -> str:
    """The Label Studio labeling config (XML) for boxes of ``class_names`` on a page image.

    The class list comes from the model card, so one function serves any detector. Names are
    XML-escaped; tag names ``image``/``label`` are what pushes and pulls use as
    ``to_name``/``from_name``. Rotation is off because the data model's boxes are axis-aligned.
    """
    names = [str(n) for n in class_names]
    if not names:
        raise ValueError("labeling_config needs at least one class name")
    if any(not n.strip() for n in names):
        raise ValueError("class names must not be blank")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate class names: {names}")
    if header is None:
        header = (
            f"Correct the model's boxes: one tight box per {' or '.join(names)}; delete false boxes. "
            "Nothing to box on the page: submit with no boxes. Unreadable page: skip."
        )
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(_PALETTE[i % len(_PALETTE)])}/>"
        for i, name in enumerate(names)
    )
    return (
        "<View>\n"
        f"  <Header value={quoteattr(header)}/>\n"
        '  <Image name="image" value="$image" zoom="true" zoomControl="true" rotateControl="false"/>\n'
        '  <RectangleLabels name="label" toName="image" canRotate="false" strokeWidth="2">\n'
        f"{labels}\n"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


_INLINE_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<em>\1</em>"),
    (re.compile(r"(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), r'<a href="\2">\1</a>'),
]


def _inline(text: str) -> str:
    out = html.escape(text, quote=True)
    for pattern, repl in _INLINE_RULES:
        out = pattern.sub(repl, out)
    return out


def markdown_to_html(markdown: str) -> str:
    """A minimal Markdown → HTML converter: headings, paragraphs, ``-``/``*``/``1.`` lists
    (continuation lines indented), bold, italics, inline code, links.

    Why not a library: the instructions are ours and simple, and the SDK's base install stays
    free of extra dependencies. Text is HTML-escaped before markup is applied.
    """
    blocks: list[str] = []
    para: list[str] = []
    list_tag: str | None = None
    items: list[str] = []

    def flush_para() -> None:
        if para:
            blocks.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    def flush_list() -> None:
        nonlocal list_tag
        if list_tag:
            body = "".join(f"<li>{_inline(item)}</li>" for item in items)
            blocks.append(f"<{list_tag}>{body}</{list_tag}>")
            items.clear()
            list_tag = None

    for raw in markdown.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        bullet = re.match(r"^[-*+]\s+(.*)$", stripped)
        ordered = re.match(r"^\d+[.)]\s+(.*)$", stripped)
        if not stripped:
            flush_para()
            continue
        if heading and not raw.startswith((" ", "\t")):
            flush_para()
            flush_list()
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif (bullet or ordered) and not raw.startswith(("  ", "\t")):
            flush_para()
            tag = "ul" if bullet else "ol"
            if list_tag != tag:
                flush_list()
                list_tag = tag
            items.append((bullet or ordered).group(1))  # type: ignore[union-attr]
        elif list_tag and raw.startswith((" ", "\t")) and items:
            items[-1] += " " + stripped
        else:
            flush_list()
            para.append(stripped)
    flush_para()
    flush_list()
    return "\n".join(blocks) + "\n"


def instructions_path() -> Path:
    return repo_root() / "labeling" / "INSTRUCTIONS.md"


def instructions_html(path: Path | None = None) -> str:
    """The reviewer instructions as HTML, for a project's ``expert_instruction``.

    Reads ``labeling/INSTRUCTIONS.md`` (the one source reviewers and the repo share); when the
    SDK is installed without the checkout, a built-in short version keeps projects usable.
    """
    source = path or instructions_path()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError:
        text = _BUILTIN_INSTRUCTIONS
    return markdown_to_html(text)


# --------------------------------------------------------------------------------------------
# Command line


def _print_ready(handle: LabelStudioHandle) -> None:
    note = " (from the template data dir)" if handle.used_template else ""
    print(f"Label Studio is ready in {handle.started_in:.1f} s{note}")
    print(f"  url:      {handle.url}")
    print(f"  token:    {handle.token}")
    print(f"  user:     {handle.username}")
    print(f"  pid:      {handle.pid} (pid file {handle.pid_file})")
    print(f"  log:      {handle.log_file}")
    print(f"  data dir: {handle.data_dir}")
    print(f"  local files under: {handle.document_root}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inkloop.labelstudio_server",
        description="Run a local Label Studio server for inkloop (see the module docstring).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create the venv and install Label Studio (idempotent)")
    p_start = sub.add_parser("start", help="start a server and wait until it is ready")
    p_start.add_argument("--port", type=int, default=None)
    p_start.add_argument("--data-dir", type=Path, default=None)
    p_start.add_argument("--no-setup", action="store_true", help="fail instead of installing")
    p_start.add_argument("--timeout", type=float, default=READY_TIMEOUT)
    p_stop = sub.add_parser("stop", help="stop the server of the data dir's pid file")
    p_stop.add_argument("--data-dir", type=Path, default=None)
    p_status = sub.add_parser("status", help="say whether the server of the data dir runs")
    p_status.add_argument("--data-dir", type=Path, default=None)
    p_config = sub.add_parser("config", help="print the labeling config for class names")
    p_config.add_argument("class_names", nargs="*", default=["signature"])
    sub.add_parser("instructions", help="print the reviewer instructions as HTML")
    args = parser.parse_args(argv)

    try:
        if args.command == "setup":
            venv = ensure_venv()
            print(f"Label Studio {LABEL_STUDIO_VERSION} is installed in {venv}")
        elif args.command == "start":
            server = LabelStudioServer(timeout=args.timeout)
            if args.port is not None:
                server.port = args.port
            if args.data_dir is not None:
                server.data_dir = args.data_dir.resolve()
            if not args.no_setup:
                server.setup()
            _print_ready(server.start())
        elif args.command == "stop":
            data_dir = args.data_dir.resolve() if args.data_dir else default_data_dir()
            print("stopped" if stop(data_dir) else f"no running server for {data_dir}")
        elif args.command == "status":
            data_dir = args.data_dir.resolve() if args.data_dir else default_data_dir()
            found = running_server(data_dir)
            print(f"running: pid {found[0]}, {found[1]}" if found else f"not running ({data_dir})")
            return 0 if found else 3
        elif args.command == "config":
            sys.stdout.write(labeling_config(args.class_names))
        elif args.command == "instructions":
            sys.stdout.write(instructions_html())
    except LabelStudioServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return 0
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
