#!/usr/bin/env python3
"""Run a private, loopback-only Postfix instance in a directory, for tests and benchmarks.

    python3 Tests/tools/postfix_instance.py --dir DIR --smtp-port PORT \
        [--route DOMAIN=TRANSPORT ...] [--default-transport TRANSPORT] \
        [--recipient-delimiter +]

Writes DIR/config/{main.cf,master.cf,transport}, DIR/queue, DIR/data and logs to
DIR/maillog (postlogd, no syslog needed). Postfix listens only on 127.0.0.1:PORT
(smtpd); nothing else is bound. /etc/postfix and /var/spool/postfix are not used, so
several instances can run at once in different DIRs on different ports.

Prints exactly one line "ready PORT" on stdout once the port answers 220, then runs
until SIGTERM/SIGINT, stops Postfix (all of this instance's processes) and exits 0.
If Postfix fails to start, the reason (tail of the maillog) goes to stderr and the
exit status is non-zero.

Routes: "sink.test=discard:", "customer.test=lmtp:inet:127.0.0.1:24240",
"example.com=smtp:[127.0.0.1]:2525". Routed domains are relay_domains. Mail for any
other domain is rejected at RCPT time (554 relay access denied), unless
--default-transport is given, in which case every recipient domain is accepted and
unrouted ones go to that transport.

Must run as root (Postfix's master needs it); the daemons run as the "postfix" user,
so DIR and its parents must be traversable by others (DIR is chmod'ed 0755). The
instance also stops when the process that started this script goes away, and (via a
small watchdog process) when this script is SIGKILLed. Use the real interpreter
(/usr/bin/python3): a pyenv shim in between does not pass SIGTERM on.

Log lines to parse (DIR/maillog; the tag is "postfix-PORT/<daemon>"; "conn_use=N, "
appears after relay= when a cached connection is reused, so match by key, not position):
    ... postfix-2525/lmtp[123]: 84411FDE3A8: to=<agent@customer.test>,
        relay=127.0.0.1[127.0.0.1]:24240, delay=0.7, delays=0.22/0.02/0.19/0.27, dsn=2.0.0,
        status=sent (250 2.0.0 <agent@customer.test> 7v3ILGY+A2spFAAAg+zDdQ Saved)
    ... postfix-2525/discard[124]: ...: to=<a@sink.test>, relay=none, ..., status=sent (sink.test)
        (the text is the route's next hop: "sink.test=discard:discarded" logs "(discarded)")
    ... status=deferred (host 127.0.0.1[127.0.0.1] said: 451 4.3.0 ... (in reply to end of DATA command))
    ... status=deferred (connect to 127.0.0.1[127.0.0.1]:24240: Connection refused)
    ... postfix-2525/qmgr[125]: 84411FDE3A8: removed
"""
import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
PR_SET_CHILD_SUBREAPER = 36

MASTER_CF = """\
# Private test instance: the only listener is smtpd on 127.0.0.1:{port}. No chroot.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{port} inet n     -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def hostname(port):
    return "mta-%d.switchboard.test" % port


def main_cf(d, port, routes, default_transport, delimiter):
    conf, queue, data, log = (os.path.join(d, x) for x in ("config", "queue", "data", "maillog"))
    domains = ", ".join(dom for dom, _ in routes)
    no_route = "error:5.3.0 no route configured for this domain"
    lines = [
        "# Private test instance on 127.0.0.1:%d (written by Tests/support/postfix_instance.py)" % port,
        "compatibility_level = 3.6",
        "config_directory = " + conf,
        "queue_directory = " + queue,
        "data_directory = " + data,
        "mail_owner = postfix",
        "setgid_group = postdrop",
        "maillog_file = " + log,
        "maillog_file_prefixes = " + d,
        "syslog_name = postfix-%d" % port,
        # Network: loopback IPv4 only; the only listener is in master.cf.
        "inet_interfaces = 127.0.0.1",
        "inet_protocols = ipv4",
        "mynetworks = 127.0.0.0/8",
        "smtp_bind_address = 127.0.0.1",
        "lmtp_bind_address = 127.0.0.1",
        # Names, explicitly (no lookups of the container's hostname).
        "myhostname = " + hostname(port),
        "mydomain = switchboard.test",
        "myorigin = $myhostname",
        "append_dot_mydomain = no",
        # No local delivery at all.
        "mydestination =",
        "local_recipient_maps =",
        "local_transport = error:5.1.1 local delivery is disabled",
        "alias_maps =",
        "alias_database =",
        "biff = no",
        # Routing.
        "relay_domains = " + domains,
        "transport_maps = texthash:" + os.path.join(conf, "transport"),
        "default_transport = " + (default_transport or no_route),
        "relay_transport = " + (default_transport or no_route),
        "smtpd_relay_restrictions = " + ("permit_mynetworks, reject_unauth_destination"
                                         if default_transport else "reject_unauth_destination"),
        "recipient_delimiter = " + (delimiter or ""),
        # No DNS anywhere.
        "smtp_dns_support_level = disabled",
        "lmtp_dns_support_level = disabled",
        "smtp_host_lookup = native",
        "lmtp_host_lookup = native",
        "smtpd_peername_lookup = no",
        # Fast retries: a 4xx-deferred message is retried within ~1-2 s.
        "queue_run_delay = 1s",
        "minimal_backoff_time = 1s",
        "maximal_backoff_time = 2s",
        "maximal_queue_lifetime = 1h",
        "bounce_queue_lifetime = 1h",
        # Throughput: don't stall SMTP clients when the queue manager lags behind.
        "in_flow_delay = 0s",
        "default_process_limit = 50",
        "smtpd_client_connection_count_limit = 0",
        # Reuse LMTP/SMTP connections to the next hop.
        "lmtp_connection_cache_on_demand = yes",
        "smtp_connection_cache_on_demand = yes",
        "readme_directory = no",
        "html_directory = no",
        "",
    ]
    return "\n".join(lines)


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def postfix_ids():
    import pwd
    pw = pwd.getpwnam("postfix")
    return pw.pw_uid, pw.pw_gid


def check_traversable(d):
    """The daemons run as `postfix`: every ancestor of DIR must be o+x."""
    p = os.path.abspath(d)
    while True:
        st = os.stat(p)
        if not st.st_mode & 0o001:
            sys.exit("postfix_instance: %s is not traversable by the postfix user (mode %o)"
                     % (p, st.st_mode & 0o777))
        if p == "/":
            return
        p = os.path.dirname(p)


def port_free(port):
    """Postfix's master binds inet listeners with SO_REUSEPORT, so a second instance on a
    port already in use would start silently and share (load-balance) the port with the
    first. A plain bind (no SO_REUSEPORT) fails if anyone listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def smtp_ready(port, hostname):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            banner = s.makefile("rb").readline()
            try:
                s.sendall(b"QUIT\r\n")
            except OSError:
                pass
            return banner.startswith(b"220 " + hostname.encode() + b" ")
    except OSError:
        return False


def tail(path, start=0, n=40):
    """The last n lines written to path since offset start."""
    try:
        with open(path, errors="replace") as f:
            f.seek(start)
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def prctl(option, arg):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)
    except Exception:
        pass


def reap(keep):
    """Reap exited orphans of the instance (we are their child subreaper), but not `keep`
    (the master, which subprocess waits for)."""
    me = str(os.getpid())
    for e in os.listdir("/proc"):
        if e.isdigit() and int(e) != keep:
            try:
                with open("/proc/%s/stat" % e) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] == "Z" and fields[1] == me:
                    os.waitpid(int(e), os.WNOHANG)
            except (OSError, IndexError, ValueError):
                pass


def session_pids(sid):
    pids = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open("/proc/%s/stat" % e) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                # fields: state ppid pgrp session ...
                if int(fields[3]) == sid and fields[0] != "Z":
                    pids.append(int(e))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def main():
    ap = argparse.ArgumentParser(description="Run a private loopback-only Postfix instance.")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--smtp-port", type=int, required=True)
    ap.add_argument("--route", action="append", default=[], metavar="DOMAIN=TRANSPORT")
    ap.add_argument("--default-transport")
    ap.add_argument("--recipient-delimiter")
    ap.add_argument("--startup-timeout", type=float, default=30)
    a = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("postfix_instance: must run as root")
    routes = []
    for r in a.route:
        dom, sep, transport = r.partition("=")
        if not sep or not dom or not transport or ":" not in transport:
            sys.exit("postfix_instance: bad --route %r (want DOMAIN=TRANSPORT:NEXTHOP, e.g. sink.test=discard:)" % r)
        routes.append((dom.strip().lower(), transport.strip()))

    if not port_free(a.smtp_port):
        sys.exit("postfix_instance: 127.0.0.1:%d is already in use" % a.smtp_port)
    os.umask(0o022)
    d = os.path.abspath(a.dir)
    if any(c in d for c in " \t,$\\"):
        sys.exit("postfix_instance: --dir must not contain blanks, commas, $ or backslashes: %r" % d)
    conf = os.path.join(d, "config")
    daemon_dir = "/usr/lib/postfix/sbin"
    if os.path.exists(os.path.join(conf, "main.cf")):
        daemon_dir = subprocess.run([POSTCONF, "-c", conf, "-h", "daemon_directory"], capture_output=True,
                                    text=True).stdout.strip() or daemon_dir
        # `master -t` exits non-zero while a master holds DATA/master.lock of this instance.
        if subprocess.run([os.path.join(daemon_dir, "master"), "-c", conf, "-t"],
                          capture_output=True).returncode != 0:
            sys.exit("postfix_instance: a Postfix instance is already running in %s" % d)
    for sub in ("", "config", "queue", "data"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    os.chmod(d, 0o755)
    # The master opens DATA/master.lock as the mail_owner; the queue subdirectories are
    # created with their owners by `postfix check` (post-install create-missing) below.
    os.chown(os.path.join(d, "data"), *postfix_ids())
    os.chmod(os.path.join(d, "data"), 0o700)
    check_traversable(d)
    log = os.path.join(d, "maillog")
    log_start = os.path.getsize(log) if os.path.exists(log) else 0
    write(os.path.join(conf, "main.cf"),
          main_cf(d, a.smtp_port, routes, a.default_transport, a.recipient_delimiter))
    write(os.path.join(conf, "master.cf"), MASTER_CF.format(port=a.smtp_port))
    write(os.path.join(conf, "transport"), "".join("%s %s\n" % r for r in routes))
    env = dict(os.environ, MAIL_CONFIG=conf)

    # Creates the queue directories with the right owners (post-install create-missing),
    # and checks the configuration.
    chk = subprocess.run([POSTFIX, "-c", conf, "check"], env=env, capture_output=True, text=True)
    if chk.returncode != 0:
        sys.stderr.write("postfix_instance: postfix check failed:\n%s%s%s" % (chk.stdout, chk.stderr, tail(log, log_start)))
        sys.exit(1)
    daemon_dir = subprocess.run([POSTCONF, "-c", conf, "-h", "daemon_directory"], env=env,
                                capture_output=True, text=True).stdout.strip() or daemon_dir

    parent = os.getppid()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))

    # Orphaned Postfix processes are re-parented to us (not to the container's init) and
    # reaped here.
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    out = open(os.path.join(d, "master.out"), "wb")
    master = subprocess.Popen([os.path.join(daemon_dir, "master"), "-c", conf, "-s"], env=env,
                              stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    # Watchdog for when this script is SIGKILLed: it waits for EOF on a pipe only we hold,
    # then stops the instance. (PR_SET_PDEATHSIG can't do this: the master changes its
    # effective uid to open its lock file, which clears the parent-death signal.)
    watchdog = subprocess.Popen(["/bin/sh", "-c", 'read _; exec "$0" -c "$1" stop', POSTFIX, conf],
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def stop():
        watchdog.kill()
        watchdog.wait()
        if master.poll() is None:
            subprocess.run([POSTFIX, "-c", conf, "stop"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                master.wait(timeout=10)
            except subprocess.TimeoutExpired:
                master.kill()
                master.wait()
        # Anything of this instance still alive (the master ran its own session)?
        deadline = time.monotonic() + 5
        while session_pids(master.pid) and time.monotonic() < deadline:
            reap(master.pid)
            time.sleep(0.05)
        for pid in session_pids(master.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        reap(master.pid)

    deadline = time.monotonic() + a.startup_timeout
    while True:
        if stopping or os.getppid() != parent:
            stop()
            return 0
        if master.poll() is not None:
            reason = tail(log, log_start)
            with open(os.path.join(d, "master.out"), errors="replace") as f:
                reason += f.read()
            if not reason:
                reason = ("(nothing logged: the master reports errors that happen before its postlogd "
                          "runs nowhere; try `%s -c %s -d -v` or strace it)\n"
                          % (os.path.join(daemon_dir, "master"), conf))
            sys.stderr.write("postfix_instance: postfix master exited with status %s:\n%s"
                             % (master.returncode, reason))
            stop()
            return 1
        if smtp_ready(a.smtp_port, hostname(a.smtp_port)):
            break
        if time.monotonic() > deadline:
            sys.stderr.write("postfix_instance: no 220 on 127.0.0.1:%d after %gs:\n%s"
                             % (a.smtp_port, a.startup_timeout, tail(log, log_start)))
            stop()
            return 1
        time.sleep(0.05)

    sys.stdout.write("ready %d\n" % a.smtp_port)
    sys.stdout.flush()
    while not stopping and master.poll() is None and os.getppid() == parent:
        reap(master.pid)
        time.sleep(0.2)
    if os.getppid() != parent:
        stopping.append(1)  # whoever started us is gone (e.g. a killed test runner)
    if not stopping:
        sys.stderr.write("postfix_instance: postfix master exited unexpectedly (status %s):\n%s"
                         % (master.returncode, tail(log, log_start)))
        stop()
        return 1
    stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
