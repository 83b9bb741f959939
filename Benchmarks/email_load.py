#!/usr/bin/env python3
"""Mail load generator for the email phase of `make bench`.

Pushes N unique messages over K reused connections, pipelining MAIL/RCPT/DATA, either
  --lmtp HOST:PORT   straight to an LMTP server (Switchboard's listener): each 250 after the
                     final dot means the message is committed, so the run ends at the last one;
  --smtp HOST:PORT   to an MTA (the private Postfix); with --maillog FILE the run ends when FILE
                     has N final deliveries (`status=sent`) for this run's queue ids.
Message-IDs are `<b-<run>.<conn>.<n>-<send ns>@bench.invalid>`, which the bench helpdesk
recognises, so it counts the messages and their latency.

Prints a human summary and a RESULT line: sent, accepted, delivered, seconds, rate (delivered/s).
"""
import argparse
import asyncio
import os
import re
import time


def message(run, conn, n, users, to):
    ns = time.time_ns()
    user = (conn * 7919 + n) % users
    body = ("Hello,\r\n\r\nI ordered item %d last week and it has not arrived yet. Could you tell me "
            "where it is and when it will be delivered? The order number is %d-%d.\r\n\r\n" % (n, conn, n)) * 4
    return (
        f"From: Customer {user} <customer{user}@bench.invalid>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: Order {conn}-{n}\r\n"
        f"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <b-{run}.{conn}.{n}-{ns}@bench.invalid>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"\r\n{body}Thanks,\r\nCustomer {user}\r\n"
    ), user


async def read_reply(reader):
    """One (possibly multi-line) reply: (code, text of its last line)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), line.decode(errors="replace").strip()


async def connection(args, conn, count, stats):
    host, port = args.target.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    code, _ = await read_reply(reader)
    assert code == 220, code
    writer.write((("LHLO" if args.lmtp else "EHLO") + " bench.invalid\r\n").encode())
    code, _ = await read_reply(reader)
    assert code == 250, code
    for n in range(count):
        text, user = message(args.run, conn, n, args.users, args.to)
        # Pipelined: the envelope and DATA in one write (both servers offer PIPELINING).
        writer.write(f"MAIL FROM:<customer{user}@bench.invalid>\r\nRCPT TO:<{args.to}>\r\nDATA\r\n".encode())
        replies = [await read_reply(reader) for _ in range(3)]
        if replies[0][0] != 250 or replies[1][0] != 250 or replies[2][0] != 354:
            stats["refused"] += 1
            writer.write(b"RSET\r\n")
            await read_reply(reader)
            continue
        writer.write(text.replace("\r\n.", "\r\n..").encode() + b"\r\n.\r\n")
        stats["sent"] += 1
        code, line = await read_reply(reader)
        if code == 250:
            stats["accepted"] += 1
            m = re.search(r"queued as ([0-9A-F]+)", line)
            if m:
                stats["queue_ids"].add(m.group(1))
        else:
            stats["refused"] += 1
            stats["last_refusal"] = line
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


def delivered_in(maillog, queue_ids):
    if not os.path.exists(maillog):
        return 0
    done = 0
    with open(maillog, errors="replace") as f:
        for line in f:
            if "status=sent" in line:
                m = re.search(r": ([0-9A-F]+): to=", line)
                if m and m.group(1) in queue_ids:
                    done += 1
    return done


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--lmtp", metavar="HOST:PORT")
    group.add_argument("--smtp", metavar="HOST:PORT")
    ap.add_argument("--to", default="support@bench.test")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--maillog", help="with --smtp: wait for this many final deliveries in the MTA's log")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--run", default=os.urandom(3).hex())
    args = ap.parse_args()
    args.target = args.lmtp or args.smtp

    stats = {"sent": 0, "accepted": 0, "refused": 0, "queue_ids": set(), "last_refusal": ""}
    per = [args.messages // args.connections + (1 if i < args.messages % args.connections else 0) for i in range(args.connections)]
    start = time.monotonic()
    await asyncio.gather(*(connection(args, c, per[c], stats) for c in range(args.connections)))
    accepted_at = time.monotonic() - start
    delivered = stats["accepted"]
    if args.smtp and args.maillog:
        deadline = time.monotonic() + args.timeout
        while True:
            delivered = delivered_in(args.maillog, stats["queue_ids"])
            if delivered >= len(stats["queue_ids"]) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    elapsed = time.monotonic() - start
    rate = delivered / elapsed if elapsed > 0 else 0
    mode = "lmtp" if args.lmtp else "smtp"
    print(f"{mode} {args.target}: {stats['sent']} sent over {args.connections} connections, {stats['accepted']} accepted "
          f"in {accepted_at:.2f} s, {delivered} delivered in {elapsed:.2f} s: {rate:.0f} messages/s"
          + (f"; {stats['refused']} refused (last: {stats['last_refusal']})" if stats["refused"] else ""))
    print(f"RESULT sent={stats['sent']} accepted={stats['accepted']} delivered={delivered} refused={stats['refused']} "
          f"accept_seconds={accepted_at:.3f} seconds={elapsed:.3f} rate={rate:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
