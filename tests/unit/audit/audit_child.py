"""A real writer process for the audit tests (run as a script with PYTHONPATH=repo).

``write PATH ID THREADS COUNT [--key K] [--max-bytes B] [--every E] [--stdout]``:
THREADS threads each record COUNT decisions (uids ``ID-thread-i``), then close.

``loop PATH MESSAGE_BYTES``: record decisions with a big message forever
(the test kills it with SIGKILL).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.unit.audit.audit_fixtures import decision, request
from webhook.api.decision import Decision
from webhook.audit.signing import load_signer
from webhook.audit.writer import AuditWriter


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("write")
    w.add_argument("path")
    w.add_argument("ident")
    w.add_argument("threads", type=int)
    w.add_argument("count", type=int)
    w.add_argument("--key")
    w.add_argument("--max-bytes", type=int, default=0)
    w.add_argument("--every", type=int, default=0)
    w.add_argument("--stdout", action="store_true")
    loop = sub.add_parser("loop")
    loop.add_argument("path")
    loop.add_argument("message_bytes", type=int)
    args = parser.parse_args()

    if args.mode == "loop":
        writer = AuditWriter(args.path, checkpoint_interval=0)
        base = decision()
        big = Decision(
            outcome=base.outcome,
            target=base.target,
            deciding=base.deciding,
            matched=base.matched,
            before=base.before,
            after=base.after,
            patch=base.patch,
            message="x" * args.message_bytes,
        )
        i = 0
        while True:
            writer.record(request(uid=f"loop-{i}"), big)
            i += 1

    writer = AuditWriter(
        args.path,
        signer=load_signer(args.key) if args.key else None,
        stdout=args.stdout,
        max_bytes=args.max_bytes,
        checkpoint_every=args.every,
        checkpoint_interval=0.05 if args.key else 0,
    )
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for i in range(args.count):
                uid = f"{args.ident}-{thread}-{i}"
                writer.record(request(uid=uid, name=f"pv-{uid}"), decision())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    if errors:
        print(f"child {args.ident}: {errors[0]!r}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
