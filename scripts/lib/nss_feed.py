#!/usr/bin/env python3
"""Streams generated NSS MCAS feed records (QRadar LEEF, one a line) to a TCP receiver,
as the NSS service does, at a steady rate over several connections. Prints how many
records and bytes it sent as JSON on its last line."""

import argparse
import json
import socket
import threading
import time

CATEGORIES = ["Blocked", "Allowed", "Caution"]
APPS = ["General%20Browsing", "Webmail", "File%20Sharing", "Social%20Networking", "Streaming%20Media"]


def record(conn: int, n: int) -> bytes:
    return (
        f"{time.strftime('%a %b %d %H:%M:%S UTC %Y', time.gmtime())} zscaler-nss: "
        f"LEEF:1.0|Zscaler|NSS|4.1|NA|cat={CATEGORIES[n % 3]}\t"
        f"devTime={time.strftime('%b %d %Y %H:%M:%S UTC', time.gmtime())}\t"
        f"src=10.{conn}.{n % 250}.{n % 200}\tdst=93.184.{n % 250}.{n % 97}\tsrcPort={1024 + n % 60000}\t"
        f"url=www.app{n % 500}.example.com/path/{n % 1000}?q={n}\tuser=user{n % 3000}@example.com\t"
        f"department=Dept{n % 40}\tappclass={APPS[n % len(APPS)]}\t"
        f"reqMethod=GET\trecordid={conn}{n:012d}\tdstBytes={(n * 7919) % 900000}\t"
        f"useragent=Mozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64)\n"
    ).encode()


def stream(addr, conn, rate, seconds, totals, lock):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sent = bytes_sent = 0
    start = time.monotonic()
    tick = 0.1
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        if due > sent:
            chunk = b"".join(record(conn, n) for n in range(sent, due))
            sock.sendall(chunk)
            bytes_sent += len(chunk)
            sent = due
        time.sleep(tick)
    sock.shutdown(socket.SHUT_WR)
    sock.recv(1)
    sock.close()
    with lock:
        totals["records"] += sent
        totals["bytes"] += bytes_sent


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--to", required=True, help="host:port of the receiver")
    parser.add_argument("--rate", type=int, default=2000, help="records a second, all connections together")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--connections", type=int, default=2)
    args = parser.parse_args()
    totals = {"records": 0, "bytes": 0}
    lock = threading.Lock()
    threads = [
        threading.Thread(target=stream, args=(args.to, c, args.rate / args.connections, args.seconds, totals, lock))
        for c in range(args.connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
