"""Start moto's server (DynamoDB + Secrets Manager emulator) serving ONE request at a time.

Stock moto_server runs werkzeug with threaded=True, and moto's conditional updates are not atomic
across threads: under concurrency a conditional counter over-admits. Forcing threaded=False makes
every request run to completion before the next starts, which is what DynamoDB guarantees per item.
"""
import sys

import moto.server as server

_run_simple = server.run_simple


def _serial_run_simple(*args, **kwargs):
    kwargs["threaded"] = False
    kwargs["processes"] = 1
    return _run_simple(*args, **kwargs)


server.run_simple = _serial_run_simple

if __name__ == "__main__":
    server.main(sys.argv[1:])
