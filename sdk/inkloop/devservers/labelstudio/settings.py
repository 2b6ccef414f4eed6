"""Label Studio dev server: versions, defaults (each overridable by an environment variable), errors."""

from __future__ import annotations

import os
from pathlib import Path

from inkloop.review.labeling import repo_root

LABEL_STUDIO_VERSION = "1.23.2"


DEFAULT_PORT = 8080


DEFAULT_USERNAME = "admin@inkloop.local"


DEFAULT_PASSWORD = "inkloop-dev-password"


READY_TIMEOUT = 300.0  # a first start on an empty data dir migrates for about 90 s on 2 cores


STOP_TIMEOUT = 20.0


HOST = "127.0.0.1"


PID_FILE_NAME = "labelstudio.pid"


LOG_FILE_NAME = "labelstudio.log"


STATE_FILE_NAME = "labelstudio.json"


DB_FILE_NAME = "label_studio.sqlite3"


TEMPLATE_META_NAME = "inkloop-template.json"


# The admin's Personal Access Token, minted on the data dir's first start (inkloop.devservers.
# labelstudio.tokens); copied with the template like the database it belongs to.
TOKEN_FILE_NAME = "personal-access-token"


# Label Studio's settings file in a data dir; its SECRET_KEY signs every JWT, the PAT included.
ENV_FILE_NAME = ".env"
SECRET_KEY_NAME = "SECRET_KEY"


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
    "PYTHONDONTWRITEBYTECODE",  # its venv is not byte-compiled at install: the first start caches
    # Label Studio takes an inherited SECRET_KEY over its data dir's: the key that signed the
    # admin's Personal Access Token must be the data dir's own (tokens.ensure_signing_key)
    SECRET_KEY_NAME,
}


_STRIPPED_ENV_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_")


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
