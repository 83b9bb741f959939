#!/usr/bin/env python3
"""Web chat widget benchmark: many concurrently open visitor WebSockets.

Creates N visitors the way the widget does (a WebSocket to /webchat/<channel>/ws, a `hello`
without a token; the `welcome` answer carries the new visitor token), keeps all N sockets open,
and then measures, while they are all open:

  * message round trip: the visitor sends a `message` frame → the daemon's `ack` for its
    client_id arrives on the same socket (the message has then been committed, logged and
    emitted to the pipeline);
  * reply round trip (optional, `--replies`): the helpdesk API's
    POST /v1/conversations/{id}/messages → the `message` frame (direction "out") arrives on
    the visitor's socket.

It reads the daemon's memory from /proc/<pid>/status and /proc/<pid>/smaps_rollup before the
first socket, when all N are open, and at the end, and reports RSS per socket.

Needs Python 3.9+ and `websockets` (>= 13, the asyncio API); stdlib otherwise.

  Benchmarks/webchat_ws.py --url http://127.0.0.1:8080 --channel site \\
      --api http://127.0.0.1:8081 --api-token demo-token-change-me-0123456789 \\
      --pid "$(pidof switchboard)" --visitors 10000 --ramp 500 --samples 1000

File descriptors: this script raises its own RLIMIT_NOFILE (soft, up to the hard limit) to
N + 1000. The DAEMON needs the same: start it with `ulimit -n` >= N + 1000 (systemd:
LimitNOFILE=, already 65536 in systemd/switchboard.service). The script warns when the
daemon's "Max open files" (from /proc/<pid>/limits) is too small.

Rate limits: a new visitor counts against the channel's `rate_limits.ip_new_visitors_per_hour`
(default 60 per source address per hour) and messages against `ip_messages_per_minute`
(default 120). For a bench either raise them in the channel's config, e.g.

    rate_limits: { ip_new_visitors_per_hour: 100000, ip_messages_per_minute: 100000 }

or spread the visitors over loopback source addresses with `--source-ips K` (127.1.x.y; the
daemon sees each as its own IP; the default limits need K >= N / 60). The per-visitor limit
(20 messages a minute) is never reached: each sampled visitor sends a few messages at most.
`--tokens FILE` keeps the visitor tokens, so a second run against the same database resumes
the same visitors (no new visitors, no rate limit) instead of creating new ones.

Output: a readable summary on stderr, one `RESULT k=v ...` line on stdout, and the full
result as JSON with `--json FILE`.
"""

import argparse
import asyncio
import http.client
import json
import os
import random
import resource
import sys
import time
import urllib.parse

try:
    from websockets.asyncio.client import connect as ws_connect
    from websockets.protocol import State as WSState
except ImportError:  # pragma: no cover
    sys.exit("webchat_ws.py needs the `websockets` package (>= 13): pip install websockets")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --- the daemon's process --------------------------------------------------------------------

def proc_status(pid):
    """VmRSS, VmHWM, RssAnon, RssFile, Threads from /proc/<pid>/status (kB)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def smaps_rollup(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Anonymous", "Private_Dirty"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def proc_cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def max_open_files(pid):
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft = line.split()[3]
                    return None if soft == "unlimited" else int(soft)
    except OSError:
        pass
    return None


def snapshot(pid):
    s = proc_status(pid) if pid else {}
    r = smaps_rollup(pid) if pid else {}
    return {"rss_kb": s.get("VmRSS"), "hwm_kb": s.get("VmHWM"), "anon_kb": s.get("RssAnon"), "file_kb": s.get("RssFile"),
            "threads": s.get("Threads"), "pss_kb": r.get("Pss"), "fds": proc_fds(pid) if pid else None,
            "cpu_s": proc_cpu_seconds(pid) if pid else None}


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard


# --- statistics --------------------------------------------------------------------------------

def pct(sorted_values, p):
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def summary(values_ms):
    v = sorted(values_ms)
    r = lambda x: None if x is None else round(x, 2)
    return {"count": len(v), "p50_ms": r(pct(v, 50)), "p90_ms": r(pct(v, 90)), "p99_ms": r(pct(v, 99)),
            "max_ms": r(v[-1] if v else None), "mean_ms": r(sum(v) / len(v) if v else None)}


# --- visitors --------------------------------------------------------------------------------

class Refused(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class Visitor:
    __slots__ = ("idx", "ip", "token", "peer", "ws", "reader", "acks", "replies", "ended", "message_id", "conversation")

    def __init__(self, idx, ip, token):
        self.idx, self.ip, self.token = idx, ip, token
        self.peer = self.ws = self.reader = self.message_id = self.conversation = None
        self.acks = {}      # client_id -> future(frame)
        self.replies = {}   # text -> future(arrival perf_counter)
        self.ended = False

    @property
    def open(self):
        return self.ws is not None and not self.ended and self.ws.state is WSState.OPEN

    async def read_loop(self):
        """Consumes every frame (so nothing piles up) and completes the waiters."""
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                if not (self.acks or self.replies):
                    continue
                try:
                    f = json.loads(raw)
                except ValueError:
                    continue
                t = f.get("type")
                if t in ("ack", "slow_down", "error") and f.get("client_id") in self.acks:
                    fut = self.acks.pop(f["client_id"])
                    if not fut.done():
                        fut.set_result((now, f))
                elif t == "message" and f.get("direction") == "out" and f.get("text") in self.replies:
                    fut = self.replies.pop(f["text"])
                    if not fut.done():
                        fut.set_result(now)
        except Exception:
            pass
        finally:
            self.ended = True
            for fut in list(self.acks.values()) + list(self.replies.values()):
                if not fut.done():
                    fut.set_exception(ConnectionError("socket closed"))


class Bench:
    def __init__(self, a):
        self.a = a
        u = urllib.parse.urlsplit(a.url.rstrip("/"))
        if u.scheme not in ("http", "https"):
            sys.exit("--url must be the daemon's public http(s) base URL, e.g. http://127.0.0.1:8080")
        self.origin = f"{u.scheme}://{u.netloc}"
        ws_scheme = "wss" if u.scheme == "https" else "ws"
        self.ws_url = f"{ws_scheme}://{u.netloc}{u.path}/webchat/{urllib.parse.quote(a.channel)}/ws"
        self.visitors = []
        self.failures = {}
        self.connect_ms = []
        self.opened = 0

    def source_ip(self, i):
        if self.a.source_ips <= 1:
            return None
        j = i % self.a.source_ips
        return f"127.1.{j // 250}.{1 + j % 250}"

    def fail(self, reason):
        self.failures[reason] = self.failures.get(reason, 0) + 1

    async def open_visitor(self, v):
        t0 = time.perf_counter()
        kwargs = dict(origin=self.origin, compression=None, ping_interval=None, close_timeout=2,
                      open_timeout=self.a.timeout, max_size=1 << 20, max_queue=64)
        if v.ip:
            kwargs["local_addr"] = (v.ip, 0)
        ws = await ws_connect(self.ws_url, **kwargs)
        try:
            hello = {"type": "hello", "last_seq": 0, "new_visit": True,
                     "profile": {"name": f"Bench visitor {v.idx}"},
                     "context": {"url": self.origin + "/bench", "title": "webchat_ws.py", "locale": "en"}}
            if v.token:
                hello["token"] = v.token
            await ws.send(json.dumps(hello))
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), self.a.timeout))
                t = f.get("type")
                if t == "welcome":
                    v.token = f.get("token") or v.token
                    v.peer = (f.get("visitor") or {}).get("id")
                elif t == "synced":
                    break
                elif t == "slow_down":
                    raise Refused("slow_down: " + str(f.get("message")))
                elif t == "error":
                    raise Refused("error " + str(f.get("code")))
        except BaseException:
            ws.transport.abort()
            raise
        v.ws = ws
        v.reader = asyncio.get_running_loop().create_task(v.read_loop())
        self.connect_ms.append((time.perf_counter() - t0) * 1000)

    async def ramp(self, n, tokens):
        a = self.a
        sem = asyncio.Semaphore(a.concurrency)
        interval = 1.0 / a.ramp if a.ramp > 0 else 0.0
        start = time.perf_counter()
        last_report = start
        pending = set()

        async def one(v):
            try:
                try:
                    await self.open_visitor(v)
                except Refused as e:
                    if e.reason == "error invalid_token" and v.token:
                        v.token = None   # a tokens file from another database: start a new visitor
                        await self.open_visitor(v)
                    else:
                        raise
                self.opened += 1
            except Refused as e:
                self.fail(e.reason)
            except (OSError, asyncio.TimeoutError) as e:
                self.fail(type(e).__name__ + (f" errno {e.errno}" if getattr(e, "errno", None) else ""))
            except Exception as e:  # handshake refused (InvalidStatus), closed early, ...
                self.fail(type(e).__name__ + ": " + str(e)[:80])
            finally:
                sem.release()

        for i in range(n):
            if interval:
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await sem.acquire()
            v = Visitor(i, self.source_ip(i), tokens[i] if i < len(tokens) else None)
            self.visitors.append(v)
            t = asyncio.get_running_loop().create_task(one(v))
            pending.add(t)
            t.add_done_callback(pending.discard)
            now = time.perf_counter()
            if now - last_report >= 5:
                last_report = now
                snap = snapshot(a.pid)
                log(f"    {i + 1}/{n} started, {self.opened} open, {sum(self.failures.values())} failed"
                    + (f"; daemon RSS {snap['rss_kb'] / 1024:.1f} MiB" if snap.get("rss_kb") else ""))
        if pending:
            await asyncio.wait(pending)
        return time.perf_counter() - start

    # --- round trips ---------------------------------------------------------------------------

    async def message_round_trips(self, count, rate):
        live = [v for v in self.visitors if v.open]
        if not live or count <= 0:
            return {"latencies": [], "refused": {}, "errors": 0}
        random.shuffle(live)
        lat, refused, errors = [], {}, [0]
        interval = 1.0 / rate if rate > 0 else 0.0
        loop = asyncio.get_running_loop()
        run = f"{int(time.time()) % 100000:05d}"

        async def one(n, v):
            cid = f"b{run}-{n}"
            fut = loop.create_future()
            v.acks[cid] = fut
            frame = json.dumps({"type": "message", "client_id": cid, "text": f"bench message {n} from visitor {v.idx}"})
            try:
                t0 = time.perf_counter()
                await v.ws.send(frame)
                t1, f = await asyncio.wait_for(fut, self.a.timeout)
                if f.get("type") == "ack":
                    lat.append((t1 - t0) * 1000)
                    if f.get("message_id"):
                        v.message_id = f["message_id"]
                else:
                    key = f.get("type") + ("" if f.get("type") == "slow_down" else " " + str(f.get("code")))
                    refused[key] = refused.get(key, 0) + 1
            except Exception:
                v.acks.pop(cid, None)
                errors[0] += 1

        start = time.perf_counter()
        tasks = []
        for n in range(count):
            if interval:
                delay = start + n * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(loop.create_task(one(n, live[n % len(live)])))
        await asyncio.gather(*tasks)
        return {"latencies": lat, "refused": refused, "errors": errors[0], "seconds": time.perf_counter() - start}

    def api_call(self, method, path, body=None, key=None):
        u = urllib.parse.urlsplit(self.a.api.rstrip("/"))
        conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(u.hostname, u.port, timeout=self.a.timeout)
        headers = {"Authorization": f"Bearer {self.a.api_token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if key:
            headers["Idempotency-Key"] = key
        try:
            conn.request(method, u.path + path, body=data, headers=headers)
            r = conn.getresponse()
            payload = r.read()
            return r.status, (json.loads(payload) if payload else None)
        finally:
            conn.close()

    async def reply_round_trips(self, count, rate):
        """Helpdesk reply via the API → the message frame on the visitor's socket."""
        cands = [v for v in self.visitors if v.open and v.message_id]
        if not cands or count <= 0:
            return {"latencies": [], "api_ms": [], "errors": 0, "note": "no visitor with an acknowledged message"}
        random.shuffle(cands)
        cands = cands[:count]
        # The conversation of each (not timed).
        sem = asyncio.Semaphore(8)

        async def resolve(v):
            async with sem:
                try:
                    st, body = await asyncio.to_thread(self.api_call, "GET", f"/v1/messages/{v.message_id}")
                    if st == 200:
                        m = body.get("message", body) if isinstance(body, dict) else {}
                        v.conversation = m.get("conversation_id")
                except Exception:
                    pass

        await asyncio.gather(*(resolve(v) for v in cands))
        cands = [v for v in cands if v.conversation]
        if not cands:
            return {"latencies": [], "api_ms": [], "errors": count, "note": "could not resolve conversations (API URL/token?)"}
        loop = asyncio.get_running_loop()
        lat, api_ms, errors, statuses = [], [], [0], {}
        interval = 1.0 / rate if rate > 0 else 0.0
        run = f"{int(time.time()):x}"

        async def one(n, v):
            text = f"bench reply {run}-{n}"
            fut = loop.create_future()
            v.replies[text] = fut
            try:
                t0 = time.perf_counter()
                st, _ = await asyncio.to_thread(self.api_call, "POST", f"/v1/conversations/{v.conversation}/messages",
                                                {"parts": [{"type": "text", "text": text}]}, f"bench-{run}-{n}")
                api_ms.append((time.perf_counter() - t0) * 1000)
                statuses[st] = statuses.get(st, 0) + 1
                if st != 202:
                    v.replies.pop(text, None)
                    errors[0] += 1
                    return
                t1 = await asyncio.wait_for(fut, self.a.timeout)
                lat.append((t1 - t0) * 1000)
            except Exception:
                v.replies.pop(text, None)
                errors[0] += 1

        start = time.perf_counter()
        tasks = []
        for n in range(len(cands)):
            if interval:
                delay = start + n * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(loop.create_task(one(n, cands[n])))
        await asyncio.gather(*tasks)
        return {"latencies": lat, "api_ms": api_ms, "errors": errors[0], "statuses": statuses}

    async def close_all(self):
        for v in self.visitors:
            if v.ws is not None:
                try:
                    v.ws.transport.abort()
                except Exception:
                    pass
        readers = [v.reader for v in self.visitors if v.reader]
        if readers:
            await asyncio.wait(readers, timeout=10)


async def main_async(a):
    pid = a.pid
    if pid and not os.path.exists(f"/proc/{pid}"):
        sys.exit(f"no process {pid}")
    soft, hard = raise_nofile(a.visitors + 1000)
    if soft < a.visitors + 100:
        log(f"warning: this process may open only {soft} files (hard limit {hard}); fewer than {a.visitors} sockets will open")
    dlimit = max_open_files(pid) if pid else None
    if dlimit is not None and dlimit < a.visitors + 1000:
        log(f"warning: the daemon's `ulimit -n` is {dlimit}; it needs >= {a.visitors + 1000} for {a.visitors} sockets")

    tokens = []
    if a.tokens and os.path.exists(a.tokens):
        with open(a.tokens) as f:
            tokens = [line.strip() for line in f if line.strip()]

    b = Bench(a)
    log(f"webchat_ws: {a.visitors} visitors → {b.ws_url} (ramp {a.ramp}/s, {a.concurrency} handshakes in flight"
        + (f", {a.source_ips} source addresses" if a.source_ips > 1 else "") + ")")
    before = snapshot(pid)
    ramp_s = await b.ramp(a.visitors, tokens)
    open_after_ramp = sum(1 for v in b.visitors if v.open)
    log(f"    ramp done in {ramp_s:.1f}s: {open_after_ramp} open; settling {a.settle}s ...")
    await asyncio.sleep(a.settle)
    at_n = snapshot(pid)
    smaps_at_n = smaps_rollup(pid) if pid else {}
    held_at_n = sum(1 for v in b.visitors if v.open)

    if a.hold > 0:
        log(f"    holding {held_at_n} sockets for {a.hold}s (the daemon pings every 30 s) ...")
        await asyncio.sleep(a.hold)

    log(f"    {a.samples} message round trips at {a.sample_rate}/s over {held_at_n} open sockets ...")
    msgs = await b.message_round_trips(a.samples, a.sample_rate)
    replies = {"latencies": [], "api_ms": [], "errors": 0}
    if a.replies > 0 and a.api and a.api_token:
        log(f"    {a.replies} helpdesk replies at {a.reply_rate}/s ...")
        replies = await b.reply_round_trips(a.replies, a.reply_rate)
    await asyncio.sleep(0.5)
    end = snapshot(pid)
    held = sum(1 for v in b.visitors if v.open)

    if a.tokens:
        with open(a.tokens, "w") as f:
            for v in b.visitors:
                if v.token:
                    f.write(v.token + "\n")
    await b.close_all()

    def kb(x):
        return x if x is not None else None

    per_socket = None
    per_socket_anon = None
    if before.get("rss_kb") and at_n.get("rss_kb") and held_at_n:
        per_socket = (at_n["rss_kb"] - before["rss_kb"]) * 1024 / held_at_n
    if before.get("anon_kb") and at_n.get("anon_kb") and held_at_n:
        per_socket_anon = (at_n["anon_kb"] - before["anon_kb"]) * 1024 / held_at_n
    cpu_ramp = (at_n["cpu_s"] - before["cpu_s"]) if at_n.get("cpu_s") is not None and before.get("cpu_s") is not None else None
    result = {
        "url": b.ws_url, "pid": pid,
        "sockets_requested": a.visitors, "sockets_opened": b.opened, "sockets_held_at_n": held_at_n, "sockets_held": held,
        "failures": b.failures, "ramp_seconds": round(ramp_s, 2), "ramp_rate": a.ramp,
        "connect": summary(b.connect_ms),
        "rss_before_kb": kb(before.get("rss_kb")), "rss_at_n_kb": kb(at_n.get("rss_kb")), "rss_end_kb": kb(end.get("rss_kb")),
        "hwm_kb": kb(end.get("hwm_kb")),
        "anon_before_kb": kb(before.get("anon_kb")), "anon_at_n_kb": kb(at_n.get("anon_kb")),
        "rss_per_socket_bytes": None if per_socket is None else round(per_socket),
        "anon_per_socket_bytes": None if per_socket_anon is None else round(per_socket_anon),
        "smaps_rollup_at_n_kb": smaps_at_n,
        "daemon_threads": at_n.get("threads"), "daemon_fds_at_n": at_n.get("fds"), "daemon_cpu_ramp_s": cpu_ramp,
        "message_rtt": summary(msgs["latencies"]) | {"refused": msgs["refused"], "errors": msgs["errors"], "requested": a.samples},
        "reply_rtt": summary(replies["latencies"]) | {"errors": replies.get("errors", 0), "requested": a.replies,
                                                       "api_202": summary(replies.get("api_ms", [])),
                                                       "statuses": replies.get("statuses", {})},
        "targets": {"sockets": a.visitors, "rss_mb": 300, "p99_ms": 50},
    }
    m = result["message_rtt"]
    ok_sockets = held == a.visitors
    ok_rss = at_n.get("rss_kb") is not None and at_n["rss_kb"] / 1024 < 300
    ok_p99 = m["p99_ms"] is not None and m["p99_ms"] < 50
    result["ok"] = {"sockets": ok_sockets, "rss": ok_rss, "p99": ok_p99}

    def mib(x):
        return "?" if x is None else f"{x / 1024:.1f} MiB"

    mark = lambda ok: "OK" if ok else "MISSED"
    lines = [
        f"sockets: requested {a.visitors}, opened {b.opened}, held at N {held_at_n}, held at the end {held}   [{mark(ok_sockets)}]",
    ]
    if b.failures:
        lines.append("  failures: " + ", ".join(f"{k}: {n}" for k, n in sorted(b.failures.items(), key=lambda x: -x[1])))
        if any(k.startswith("slow_down") for k in b.failures):
            lines.append("  (slow_down = rate_limits.ip_new_visitors_per_hour; raise it or use --source-ips)")
        if any("errno 24" in k for k in b.failures):
            lines.append("  (errno 24 = too many open files: raise `ulimit -n` of the daemon / this script)")
    c = result["connect"]
    lines += [
        f"ramp: {ramp_s:.1f}s; connect+hello+welcome p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms, max {c['max_ms']} ms;"
        f" daemon CPU during ramp {cpu_ramp:.1f}s" if cpu_ramp is not None else f"ramp: {ramp_s:.1f}s",
        f"daemon RSS: before {mib(before.get('rss_kb'))}, at N {mib(at_n.get('rss_kb'))}, end {mib(end.get('rss_kb'))},"
        f" peak {mib(end.get('hwm_kb'))}   [at N < 300 MiB: {mark(ok_rss)}]",
        f"RSS per socket: {'?' if per_socket is None else f'{per_socket / 1024:.1f} KiB'}"
        f" (anonymous {'?' if per_socket_anon is None else f'{per_socket_anon / 1024:.1f} KiB'});"
        f" threads {at_n.get('threads')}, fds {at_n.get('fds')}",
        f"message → ack: n={m['count']}/{a.samples}, p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, max {m['max_ms']} ms"
        + (f"; refused {m['refused']}" if m["refused"] else "") + (f"; errors/timeouts {m['errors']}" if m["errors"] else "")
        + f"   [p99 < 50 ms: {mark(ok_p99)}]",
    ]
    r = result["reply_rtt"]
    if a.replies > 0:
        lines.append(f"API reply → visitor socket: n={r['count']}/{a.replies}, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms,"
                     f" max {r['max_ms']} ms (API 202 p50 {r['api_202']['p50_ms']} ms)"
                     + (f"; errors {r['errors']}" if r["errors"] else "") + (f"; {replies.get('note')}" if replies.get("note") else ""))
    log("\n".join(lines))
    kv = {"requested": a.visitors, "held": held, "held_at_n": held_at_n, "failed": sum(b.failures.values()),
          "rss_before_kb": before.get("rss_kb"), "rss_at_n_kb": at_n.get("rss_kb"), "rss_end_kb": end.get("rss_kb"),
          "rss_per_socket_b": result["rss_per_socket_bytes"],
          "msg_p50_ms": m["p50_ms"], "msg_p99_ms": m["p99_ms"], "msg_max_ms": m["max_ms"], "msg_n": m["count"],
          "reply_p50_ms": r["p50_ms"], "reply_p99_ms": r["p99_ms"], "reply_max_ms": r["max_ms"], "reply_n": r["count"]}
    print("RESULT " + " ".join(f"{k}={'' if v is None else v}" for k, v in kv.items()), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="See the module docstring (head Benchmarks/webchat_ws.py) for rate limits and fd limits.")
    p.add_argument("--url", required=True, help="the daemon's public base URL (server.public_url), e.g. http://127.0.0.1:8080")
    p.add_argument("--channel", default="site", help="the webchat channel id (default: site)")
    p.add_argument("--api", default=None, help="helpdesk API base URL, e.g. http://127.0.0.1:8081 (for --replies)")
    p.add_argument("--api-token", default=os.environ.get("SWITCHBOARD_API_TOKEN"), help="API bearer token (or $SWITCHBOARD_API_TOKEN)")
    p.add_argument("--pid", type=int, default=None, help="the daemon's PID (memory from /proc/<pid>/status)")
    p.add_argument("--visitors", type=int, default=10000, help="sockets to open and hold (default 10000)")
    p.add_argument("--ramp", type=float, default=500, help="new sockets per second (default 500; 0 = as fast as possible)")
    p.add_argument("--concurrency", type=int, default=200, help="handshakes in flight at most (default 200)")
    p.add_argument("--samples", type=int, default=1000, help="message round trips to measure (default 1000)")
    p.add_argument("--sample-rate", type=float, default=50, help="messages per second while sampling (default 50)")
    p.add_argument("--replies", type=int, default=200, help="helpdesk API replies to measure (default 200; needs --api)")
    p.add_argument("--reply-rate", type=float, default=20, help="API replies per second (default 20)")
    p.add_argument("--settle", type=float, default=5, help="seconds between the last socket and the RSS reading (default 5)")
    p.add_argument("--hold", type=float, default=0, help="extra seconds to hold all sockets before sampling (e.g. 35: past a server ping)")
    p.add_argument("--source-ips", type=int, default=1, help="spread sockets over K loopback source addresses 127.1.x.y (default 1: no binding)")
    p.add_argument("--tokens", default=None, help="file of visitor tokens: read to resume visitors, written at the end")
    p.add_argument("--timeout", type=float, default=15, help="seconds to wait for a handshake/answer (default 15)")
    p.add_argument("--json", default=None, help="write the result as JSON to this file")
    a = p.parse_args()
    if a.visitors < 1:
        p.error("--visitors must be >= 1")
    try:
        sys.exit(asyncio.run(main_async(a)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
