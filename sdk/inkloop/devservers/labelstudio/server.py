"""Start and stop a local Label Studio server: the handle, the child's environment, ``start``, ``stop``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inkloop import privacy
from inkloop.devservers.labelstudio.processes import (
    _is_label_studio,
    _read_pid_file,
    _remove_runtime_files,
    listening_addresses,
)
from inkloop.devservers.labelstudio.readiness import check_token, wait_ready
from inkloop.devservers.labelstudio.settings import (
    _STRIPPED_ENV,
    _STRIPPED_ENV_PREFIXES,
    DB_FILE_NAME,
    DEFAULT_USERNAME,
    HOST,
    LABEL_STUDIO_VERSION,
    LOG_FILE_NAME,
    PID_FILE_NAME,
    READY_TIMEOUT,
    STATE_FILE_NAME,
    STOP_TIMEOUT,
    LabelStudioServerError,
    PortInUseError,
    SetupError,
    default_data_dir,
    default_document_root,
    default_password,
    default_port,
    default_template_dir,
    default_username,
    default_venv,
)
from inkloop.devservers.labelstudio.template import (
    _copy_data_dir,
    _fingerprint,
    _template_usable,
    save_template,
)
from inkloop.devservers.labelstudio.tokens import ensure_signing_key, ensure_token, read_token
from inkloop.devservers.labelstudio.venv import ensure_venv
from inkloop.devservers.spawn import spawn
from inkloop.net import free_port, port_is_free
from inkloop.processes import pid_alive, stop_group


@dataclass
class LabelStudioHandle:
    """A running server: where it is, how to authenticate, and what to stop.

    ``token`` is the admin's Personal Access Token (what a user of a stock Label Studio 1.23 has);
    it is kept out of ``repr`` so test failures and logs do not print it."""

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
    venv: Path,
    extra_env: Mapping[str, str] | None,
) -> dict[str, str]:
    """The child's environment: Label Studio's own defaults for authentication (no
    ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN``, no ``LABEL_STUDIO_USER_TOKEN``: a new organisation
    gets Personal Access Tokens only, as it ships), everything else spelled out."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _STRIPPED_ENV and not k.startswith(_STRIPPED_ENV_PREFIXES)
    }
    privacy.apply(env)  # the usage-data switches (also when inkloop's own import did not set them)
    env.update(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_DATABASE_NAME": str(data_dir / DB_FILE_NAME),
            "LABEL_STUDIO_DJANGO_DB": "sqlite",
            "LABEL_STUDIO_DEBUG": "false",
            "LABEL_STUDIO_USERNAME": username,
            "LABEL_STUDIO_PASSWORD": password,
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
            "SSRF_PROTECTION_ENABLED": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            # Label Studio writes an id file in its config dir (~/.config/label-studio) even with
            # analytics off: keep it with the server's other state.
            "XDG_CONFIG_HOME": str(data_dir / "config"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if extra_env:
        env.update(extra_env)
    return env


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
    if pid is None or not pid_alive(pid) or not _is_label_studio(pid):
        return None
    return pid, str(_read_state(data_dir).get("url", ""))


def start(
    port: int | None = None,
    data_dir: Path | str | None = None,
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

    Usable means: ``/health/`` answers, the admin's Personal Access Token exists (minted on the
    data dir's first start, :mod:`~inkloop.devservers.labelstudio.tokens`) and is accepted, and the
    server's own process listens on exactly 127.0.0.1:``port``. The venv must exist
    (:func:`ensure_venv`). The server runs in its own session/process group, so it outlives a CLI
    call and :func:`stop` can end it and any helper it spawned without touching anything else. On
    failure the child is stopped before the error propagates.
    """
    port = default_port() if port is None else int(port)
    data_dir = Path(data_dir).resolve() if data_dir else default_data_dir()
    username = username or default_username()
    password = password or default_password()
    venv = (venv or default_venv()).resolve()
    document_root = Path(document_root).resolve() if document_root else default_document_root()
    template = Path(template_dir).resolve() if template_dir else default_template_dir()
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
    fingerprint = _fingerprint(LABEL_STUDIO_VERSION, username, password)
    fresh = not (data_dir / DB_FILE_NAME).exists()
    used_template = False
    if fresh and use_template and _template_usable(template, fingerprint):
        _copy_data_dir(template, data_dir)
        used_template = True
    ensure_signing_key(data_dir)

    url = f"http://{HOST}:{port}"
    pid_file = data_dir / PID_FILE_NAME
    log_file = data_dir / LOG_FILE_NAME
    env = _child_env(
        data_dir=data_dir,
        document_root=document_root,
        username=username,
        password=password,
        venv=venv,
        extra_env=extra_env,
    )
    cmd = [str(executable), "start", "--no-browser", "--internal-host", HOST, "--port", str(port)]
    started = time.monotonic()
    banner = f"\n=== inkloop: starting Label Studio on {url} at {datetime.now(UTC)} ===\n"
    # its own process group: stop() ends it and only it
    process = spawn(cmd, log_file=log_file, env=env, cwd=data_dir, banner=banner)
    pid_file.write_text(f"{process.pid}\n")
    (data_dir / STATE_FILE_NAME).write_text(
        json.dumps({"pid": process.pid, "url": url, "port": port, "username": username}) + "\n"
    )
    handle = LabelStudioHandle(
        url=url,
        token="",
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
        wait_ready(url, timeout, process=process, log_file=log_file)
        handle.token = ensure_token(url, data_dir, username, password)
        check_token(url, handle.token)
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


def build_template(*, timeout: float = READY_TIMEOUT) -> bool:
    """Migrate an empty database once and keep it as the template, as the first :func:`start`
    would: done at setup time (``setup --template``), the first server of a test run starts in
    seconds instead of waiting on Label Studio's migrations. Uses a throwaway data dir and port on
    127.0.0.1, and stops that server by its PID. Returns False when a usable template exists."""
    import tempfile

    fingerprint = _fingerprint(LABEL_STUDIO_VERSION, default_username(), default_password())
    if _template_usable(default_template_dir(), fingerprint):
        return False
    with tempfile.TemporaryDirectory(prefix="inkloop-ls-template-") as tmp:
        handle = start(free_port(), Path(tmp) / "data", document_root=Path(tmp) / "files", timeout=timeout)
        stop(handle)
    return _template_usable(default_template_dir(), fingerprint)


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
    if not pid_alive(pid) or not _is_label_studio(pid):
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        _remove_runtime_files(pid_file, pid)
        return False
    stop_group(pid, process, timeout=timeout, what="Label Studio server")
    _remove_runtime_files(pid_file, pid)
    return True


@dataclass
class LabelStudioServer:
    """One local server's settings, resolved once from arguments and ``INKLOOP_LS_*`` variables.

    Used by the CLI and scripts; tests may use it or the functions directly. The password is kept
    out of ``repr``.
    """

    port: int = field(default_factory=default_port)
    data_dir: Path = field(default_factory=default_data_dir)
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

    @property
    def token(self) -> str | None:
        """The admin's Personal Access Token (None before the data dir's first start)."""
        return self.handle.token if self.handle is not None else read_token(self.data_dir)
