"""The ``sqldom`` command: a plain build skips the command-line library, a no-op skips the engine too.

Importing click, PyYAML and the engine costs more than a build with nothing
to do. So ``sqldom build`` with only ``-C``, ``--json``, ``-v`` and ``-j`` first
asks ``sqldom.probe``, which imports none of them; when there is work, it goes
straight to ``exits.build``. Every other command goes through ``sqldom.cli``.
"""

from __future__ import annotations

import sys


def main() -> None:
    from sqldom import probe
    args = probe.build_args(sys.argv[1:])
    if args is None:
        from sqldom.cli import main as cli_main
        cli_main()
        return
    try:
        code = probe.run(args)
    except KeyboardInterrupt:
        print("sqldom: interrupted; the database is consistent, the next build finishes the job", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - reported as any command's failure is (exit code, message, crash file)
        from sqldom import exits
        failure = e

        def reraise(_root: object) -> int:
            raise failure
        exits.run(args.root, reraise)
    if code is not None:
        sys.exit(code)
    from sqldom import exits  # (not before: a no-op answered by the probe does without it)
    exits.run(args.root, lambda root: exits.build(root, as_json=args.as_json, verbose=args.verbose, jobs=args.jobs))
