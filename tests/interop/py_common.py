"""Helpers shared by the Python interop drivers: named checks, payloads, log polling.

Every driver prints one line per check (`ok - name` or `FAIL - name: detail`) and ends with
`checks: N passed, M failed`, which run.sh turns into its one-line summary per peer.
"""

import asyncio
import os
import random
import re
import sys
import time

SIZES = [0, 1, 125, 126, 65535, 65536, 4 << 20]

# Text made of 1-, 2-, 3- and 4-byte UTF-8 sequences, so the peers' UTF-8 handling is
# exercised across frame and fragment boundaries, not only ASCII.
_UNIT = "wsframe h\u00e9llo w\u00f6rld \u20ac \U0001f600 \u2713 "

# A text message whose UTF-8 is invalid: a UTF-16 surrogate (ED A0 80) after valid text
# (the Autobahn 6.x example).
INVALID_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"


def text_of(n: int) -> str:
    """A str whose UTF-8 encoding is exactly n bytes, with multi-byte characters in it."""
    unit = _UNIT.encode()
    raw = (unit * (n // len(unit) + 1))[:n]
    s = raw.decode("utf-8", errors="ignore")
    return s + "x" * (n - len(s.encode()))


def binary_of(n: int, seed: int = 6455) -> bytes:
    return random.Random(seed + n).randbytes(n)


def size_name(n: int) -> str:
    return f"{n >> 20}MiB" if n >= (1 << 20) and n % (1 << 20) == 0 else str(n)


def token() -> str:
    return "%08x" % random.SystemRandom().getrandbits(32)


class Checks:
    def __init__(self, label: str):
        self.label = label
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok - {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL - {name}: {detail}", flush=True)
        return ok

    def fail(self, name: str, detail: str) -> bool:
        return self.check(name, False, detail)

    def finish(self) -> int:
        print(f"checks: {self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1


def describe(value) -> str:
    """A short description of a received message, for failure details."""
    if isinstance(value, str):
        return f"text of {len(value.encode())} bytes: {value[:40]!r}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"binary of {len(value)} bytes: {bytes(value[:20]).hex()}"
    return repr(value)


def same_message(expected, got) -> tuple:
    if type(expected) is not type(got) and not (
        isinstance(expected, (bytes, bytearray)) and isinstance(got, (bytes, bytearray))
    ):
        return False, f"expected {describe(expected)}, got {describe(got)}"
    if expected != got:
        return False, f"expected {describe(expected)}, got {describe(got)}"
    return True, ""


async def wait_for_log(path: str, pattern: str, timeout: float = 10.0, after: int = 0):
    """Wait until a line matching `pattern` appears in `path` past byte offset `after`.
    Returns the line or None."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(after)
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if rx.search(line):
                        return line
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.05)


def log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def log_tail(path: str, after: int, limit: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(after)
            return f.read().decode("utf-8", "replace")[-limit:].strip().replace("\n", " | ")
    except FileNotFoundError:
        return "(no log)"


def die(msg: str):
    print(f"FAIL - driver: {msg}", flush=True)
    print("checks: 0 passed, 1 failed", flush=True)
    sys.exit(1)
