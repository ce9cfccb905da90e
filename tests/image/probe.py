"""An HTTPS client run inside a container's network namespace (`nsenter --net=...`):
the container has no network of its own (--network none), so this is how a test reaches
its loopback. Prints one JSON object: {"status": int | null, "body": str, "error": str}.

    python -m tests.image.probe URL CA_FILE [--post FILE] [--wait SECONDS]
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.error
import urllib.request

#: What kube-apiserver sends with every AdmissionReview (admission-contract.md).
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, */*",
    "User-Agent": "kube-apiserver-admission",
}


def fetch(url: str, ctx: ssl.SSLContext, body: bytes | None) -> tuple[int, str]:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    req = urllib.request.Request(url, data=body, headers=HEADERS if body is not None else {})
    try:
        with opener.open(req, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode(errors="replace")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("ca")
    p.add_argument("--post")
    p.add_argument("--wait", type=float, default=0.0, help="retry until 200 for this long")
    a = p.parse_args(argv)
    ctx = ssl.create_default_context(cafile=a.ca)
    body = open(a.post, "rb").read() if a.post else None  # noqa: SIM115 - one short read
    deadline = time.monotonic() + a.wait
    result: dict[str, object] = {"status": None, "body": "", "error": ""}
    while True:
        try:
            status, text = fetch(a.url, ctx, body)
            result = {"status": status, "body": text, "error": ""}
            if status == 200:
                break
        except (OSError, ssl.SSLError) as e:
            result = {"status": None, "body": "", "error": repr(e)}
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
