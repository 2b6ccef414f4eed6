"""Run ``airflow`` CLI commands read from stdin in one process (tests only; see ``AirflowCLI``).

Each line on stdin is a JSON list of CLI arguments (``["dags", "test", ID, "-c", CONF]``); the
command runs through Airflow's own parser and command function, exactly as ``airflow ARGS`` would,
and its exit status goes back as a JSON line on the file descriptor named in ``argv[1]``. What the
command prints and logs goes to this process's stdout/stderr (a log file the caller reads).
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main() -> None:
    responses = os.fdopen(int(sys.argv[1]), "w")
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    write_default_airflow_configuration_if_needed()  # what `airflow`'s main() does first
    parser = cli_parser.get_parser()
    for line in sys.stdin:
        rc = 0
        try:
            args = parser.parse_args(json.loads(line))
            args.func(args)
        except SystemExit as exc:  # `dags test` exits with a message when the run failed
            if exc.code is None or isinstance(exc.code, int):
                rc = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                rc = 1
        except BaseException:  # reported to the caller as a failed command
            traceback.print_exc()
            rc = 1
        sys.stdout.flush()
        sys.stderr.flush()
        responses.write(json.dumps({"rc": rc}) + "\n")
        responses.flush()


if __name__ == "__main__":
    main()
