"""A local Label Studio server for development and tests.

Why this module exists: review tasks go to Label Studio, and the integration tests want a *real*
server, not a mock. Running one offline and unattended has traps (listed below), and the
shell scripts in ``labeling/``, the CLI and the pytest fixture must all avoid them the same way,
so the logic lives here once (one module per responsibility: ``settings``, ``venv``,
``processes``, ``readiness``, ``tokens``, ``template``, ``server``, ``cli``; the labeling config and reviewer
instructions are the review stage's, in :mod:`inkloop.review.labeling`):

- Label Studio pins Django and friends, so it lives in its own venv (``ensure_venv``), never in
  the SDK's environment. Nothing here imports ``label_studio`` or ``label_studio_sdk`` (hand-made
  calls authenticate through the standard-library helper :mod:`inkloop.review.auth`).
- It silently moves to the next port when the asked one is busy; a client would then talk to
  whatever owns the asked port. ``start`` checks the port first and fails loudly instead, and
  checks afterwards that the server really listens where it was asked to.
- It reads un-prefixed ``HOST``/``PORT``/``USERNAME``/``PASSWORD`` (and ``DEBUG``, ``DJANGO_DB``,
  ...) as fallbacks; the child gets a cleaned environment with every setting spelled out.
- Label Studio runs with its own defaults for authentication, as a user's stock 1.23 does: legacy
  API tokens off, Personal Access Tokens (JWT refresh tokens) on. The admin's Personal Access
  Token is minted on the first start of a data dir the way the UI does it (log in, ``POST
  /api/token/``; ``tokens``) and kept in ``<data dir>/personal-access-token`` (0600); the handle's
  ``token``, ``start``'s output and ``labeling/token.sh`` give it to users and tests.
- The admin user is created only on the first start of an empty data dir, which takes about 90 s
  of migrations. The initialised data dir is kept as a *template*
  (``$REPO/.cache/labelstudio-template``), Personal Access Token included, and copied on later
  first starts, which then take a few seconds. A template is only reused for the same Label
  Studio version and credentials.
- ``stop`` ends only the process it started (its PID, from the handle or the pid file, in its own
  process group), never anything found by name.
- Everything the server writes stays in its data dir: Label Studio also writes an id file in
  the user's config dir (``~/.config/label-studio``) even with analytics off, so the child's
  ``XDG_CONFIG_HOME`` is ``<data dir>/config``.
- The password and the token are secrets: the password goes to the child through the environment
  (not argv, which ``ps`` shows); neither goes into an exception message or a repr.

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
==========================  ==========================================  =============================

``$REPO`` is ``INKLOOP_REPO`` if set, else the checkout this file lives in (editable install),
else the current directory. The defaults are for a laptop: change the password for
anything reachable by others (the server only ever binds 127.0.0.1 here). ``INKLOOP_LS_TOKEN`` is
not a server setting: it is the token *clients* (``inkloop review``) use, the admin's PAT here.

Command line (what ``labeling/setup.sh``, ``start.sh`` and ``stop.sh`` call)::

    python -m inkloop.devservers.labelstudio setup            # create the venv, install Label Studio
    python -m inkloop.devservers.labelstudio start [--port N] # start, wait until ready, print URL + token
    python -m inkloop.devservers.labelstudio stop             # stop the server of the pid file
    python -m inkloop.devservers.labelstudio status
    python -m inkloop.devservers.labelstudio token            # print the admin's Personal Access Token
    python -m inkloop.devservers.labelstudio config signature initials   # print a labeling config
"""
