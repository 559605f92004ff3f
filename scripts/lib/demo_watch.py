#!/usr/bin/env python3
"""Watches a demo run: the agent's status file and the MCAS emulator's counters, a line
every few seconds, until the feed sender is done and MCAS holds every record; then a
summary."""

import json
import os
import ssl
import sys
import time
import urllib.request


def emulator_stats(base, ca):
    context = ssl.create_default_context(cafile=ca)
    with urllib.request.urlopen(f"{base}/_emulator/stats", context=context, timeout=5) as answer:
        return json.load(answer)


def agent_status(runtime_dir):
    try:
        with open(os.path.join(runtime_dir, "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def mib(n):
    return f"{n / 1048576:.1f} MiB"


def main():
    base, ca, runtime_dir, sent_file, deadline_s = sys.argv[1:6]
    start = time.monotonic()
    deadline = start + float(deadline_s)
    sent = None
    while True:
        time.sleep(5)
        status = agent_status(runtime_dir) or {}
        mcas = emulator_stats(base, ca)
        feed, upload, spool = status.get("feed", {}), status.get("upload", {}), status.get("spool", {})
        print(
            f"  t={time.monotonic() - start:5.0f}s  agent: read {feed.get('records', 0):>8} records"
            f" | spooled {spool.get('batches', 0)} batches | uploaded {upload.get('batches', 0)} batches,"
            f" {upload.get('records', 0)} records   MCAS: {mcas['uploads']} files, {mcas['records']} records,"
            f" {mcas['api_calls']} API calls",
            flush=True,
        )
        if sent is None and os.path.getsize(sent_file) > 0:
            sent = json.load(open(sent_file))
        if sent is not None and mcas["records"] >= sent["records"]:
            break
        if time.monotonic() > deadline:
            print("  the demo's time ran out before MCAS held every record", flush=True)
            break
    status = agent_status(runtime_dir) or {}
    upload = status.get("upload", {})
    mcas = emulator_stats(base, ca)
    sent = sent or {"records": 0, "bytes": 0}
    raw, gz = upload.get("bytes_raw", 0), upload.get("bytes_gzip", 0)
    print()
    print("Summary")
    print(f"  records streamed into the feed   {sent['records']} ({mib(sent['bytes'])})")
    print(f"  records the agent read           {status.get('feed', {}).get('records', 0)}")
    print(f"  records MCAS received            {mcas['records']} in {mcas['uploads']} gzip files")
    print(f"  bytes uploaded                   {mib(gz)} gzip for {mib(raw)} of records"
          + (f" ({gz / raw:.1%})" if raw else ""))
    print(f"  API calls                        {mcas['api_calls']} (MCAS throttle: 30 a minute; {mcas['throttled']} throttled)")
    print(f"  last upload error                {upload.get('last_error')}")
    # What MCAS's parser made of them: lines it could not read ("The log format doesn't
    # match" in its governance log) and events older than 90 days, which it ignores.
    unread = mcas.get("unparsed_lines", 0) + mcas.get("ignored_old_events", 0)
    print(f"  lines MCAS could not read        {mcas.get('unparsed_lines', 0)}; events ignored as older than 90 days: {mcas.get('ignored_old_events', 0)}")
    lost = sent["records"] - mcas["records"]
    print(f"  lost                             {max(lost, 0)}")
    sys.exit(0 if lost == 0 and unread == 0 else 1)


if __name__ == "__main__":
    main()
