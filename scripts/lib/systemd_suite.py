#!/usr/bin/env python3
"""The systemd suite's helpers, run inside its container (scripts/systemd-suite):

  emulator-records                 print the records the MCAS emulator holds
  feed N TAG                       send N records, ids TAG-0 .. TAG-(N-1), to the feed port
  wait-records N SECONDS           wait until the emulator holds at least N records
  wait-sealed SECONDS              wait until every record the daemon read is sealed on disk
  watchdog-cadence EXPECTED        measure the daemon's watchdog pings: EXPECTED s apart
"""

import json
import socket
import ssl
import subprocess
import sys
import time

EMULATOR = "https://127.0.0.1:8443"
CA = "/opt/suite/certs/ca.pem"
FEED = ("127.0.0.1", 13010)
STATUS = "/run/nss-agent/status.json"


def emulator_records():
    import urllib.request

    context = ssl.create_default_context(cafile=CA)
    with urllib.request.urlopen(f"{EMULATOR}/_emulator/stats", context=context, timeout=5) as answer:
        return json.load(answer)["records"]


def feed(count, tag):
    with socket.create_connection(FEED, timeout=10) as sock:
        # The feed's syslog-style prefix at the current time: MCAS ignores events older
        # than 90 days.
        prefix = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())
        lines = []
        for n in range(count):
            lines.append(
                f"{prefix} zscaler-nss: LEEF:1.0|Zscaler|NSS|4.1|NA|cat=Allowed\t"
                f"src=10.0.0.{n % 250}\turl=www.app{n % 50}.example.com/\trecordid={tag}-{n}\n"
            )
        sock.sendall("".join(lines).encode())
    print(f"sent {count} records tagged {tag}")


def wait_for(seconds, condition, what):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            done, last = condition()
            if done:
                print(f"{what}: {last}")
                return True
        except (OSError, ValueError, KeyError) as error:
            last = error
        time.sleep(0.2)
    print(f"timed out after {seconds}s: {what}: {last}")
    return False


def wait_records(count, seconds):
    def condition():
        held = emulator_records()
        return held >= count, f"{held} records at MCAS, {count} expected"

    return wait_for(seconds, condition, "records at MCAS")


def wait_sealed(seconds):
    def condition():
        with open(STATUS) as f:
            status = json.load(f)
        read, sealed = status["feed"]["records"], status["spool"]["sealed_records"]
        return read > 0 and sealed >= read, f"{read} read, {sealed} sealed"

    return wait_for(seconds, condition, "sealed")


def watchdog_cadence(expected):
    """Times three pings (WatchdogTimestampMonotonic changes): two intervals."""
    stamps = []
    last = None
    deadline = time.monotonic() + 4 * expected + 10
    while len(stamps) < 3 and time.monotonic() < deadline:
        out = subprocess.run(
            ["systemctl", "show", "-p", "WatchdogTimestampMonotonic", "--value", "nss-agent"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if out and out != last:
            if last is not None:
                stamps.append(int(out) / 1e6)
            last = out
        time.sleep(0.1)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    print(f"pings {', '.join(f'{g:.1f}s' for g in gaps)} apart; expected {expected}s")
    return len(gaps) == 2 and all(0.75 * expected <= g <= 1.25 * expected for g in gaps)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "emulator-records":
        print(emulator_records())
        return True
    if command == "feed":
        feed(int(args[0]), args[1])
        return True
    if command == "wait-records":
        return wait_records(int(args[0]), float(args[1]))
    if command == "wait-sealed":
        return wait_sealed(float(args[0]))
    if command == "watchdog-cadence":
        return watchdog_cadence(float(args[0]))
    print(f"unknown command {command}", file=sys.stderr)
    return False


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
