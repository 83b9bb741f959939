#!/usr/bin/env python3
"""The baseline for the MIME parse benchmark: Python's standard `email` package (policy.default)
over the same corpus, doing comparable work — parse, pick the plain and HTML bodies and decode
them to text, decode every attachment. Prints a RESULT line like SwitchboardBench's `mime`."""
import argparse
import email
import email.policy
import os
import time


def work(raw):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    n = 0
    for kind in ("plain", "html"):
        try:
            body = msg.get_body(preferencelist=(kind,))
            if body is not None:
                n += len(body.get_content())
        except Exception:  # malformed parts: Python raises, ours degrades; both move on
            pass
    for part in msg.iter_attachments():
        try:
            content = part.get_content()
            n += len(content)
        except Exception:
            pass
    for name in ("from", "to", "cc", "subject", "message-id", "in-reply-to", "references", "date"):
        try:
            n += len(str(msg.get(name, "")))
        except Exception:
            pass
    return n


def run_for(messages, seconds):
    start = time.perf_counter()
    count = size = i = 0
    while True:
        raw = messages[i]
        work(raw)
        count += 1
        size += len(raw)
        i = (i + 1) % len(messages)
        if count % 16 == 0:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return count, size, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    args = ap.parse_args()
    names = sorted(n for n in os.listdir(args.corpus) if n.endswith(".eml"))
    messages = [open(os.path.join(args.corpus, n), "rb").read() for n in names]
    run_for(messages, args.warmup)
    count, size, elapsed = run_for(messages, args.seconds)
    rate, mbps = count / elapsed, size / elapsed / 1048576
    print(f"parsed {count} messages in {elapsed:.2f} s: {rate:.0f} messages/s, {mbps:.1f} MB/s")
    print(f"RESULT messages_per_s={rate:.0f} mb_per_s={mbps:.2f} messages={count} corpus_files={len(messages)}")


if __name__ == "__main__":
    main()
