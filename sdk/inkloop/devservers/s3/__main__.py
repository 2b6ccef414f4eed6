"""``python -m inkloop.devservers.s3 [--port N]``: an S3 endpoint in the foreground (Ctrl-C stops it)."""

from __future__ import annotations

import argparse
import time

from inkloop.devservers.s3.server import start, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    handle = start(port=args.port)
    for key, value in handle.client_env().items():
        print(f"export {key}={value}")
    print(f"# moto_server pid {handle.pid}, log {handle.log_file}; Ctrl-C stops it", flush=True)
    try:
        while handle.process is None or handle.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop(handle)


if __name__ == "__main__":
    main()
