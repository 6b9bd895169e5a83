"""searchlight-forward-telco-consumer: read a Zaqar queue of envelopes, apply each
change once per version, print a line per change (docs/telco-consumer.md).

    searchlight-forward-telco-consumer --project ops --queue openstack-resources \\
        [--zaqar-url http://127.0.0.1:8888] [--state-file PATH] [--once]

Loop: claim up to ``--batch`` messages (Zaqar allows 20), decide each with
``telco_consumer.state`` (apply if its version is newer than the last applied
for that resource id, else duplicate/stale; not an envelope: malformed), write the
state file atomically, print the applied changes, then delete the batch from Zaqar.
A crash between the write and the delete only brings the messages back after the
claim's TTL, and they are then skipped as duplicates.

stdout carries one line per applied change and nothing else; warnings, progress
and the final summary go to stderr.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import re
import signal
import sys
import threading
import time
import uuid

import requests
from zaqarclient.transport import errors as transport_errors

from searchlight_forward.retry import Policy, Retry, Stopping
from telco_consumer import state as telco
from forwarders.sinks.zaqar.client import Client as _Client
from forwarders.sinks.zaqar.client import Transport as _Transport

PROG = "searchlight-forward-telco-consumer"
DEFAULT_URL = "http://127.0.0.1:8888"
MAX_PER_CLAIM = 20             # Zaqar's default max_messages_per_claim_or_pop
MIN_CLAIM = 60                 # Zaqar's MIN_CLAIM_TTL / MIN_CLAIM_GRACE
MAX_CLAIM = 43200              # Zaqar's default max_claim_ttl / max_claim_grace
IDLE_BACKOFF = (0.2, 5.0)      # empty queue: first and longest sleep, seconds
ERROR_BACKOFF = (1.0, 30.0)    # Zaqar failing: first and longest wait, seconds
ONCE_ATTEMPTS = 5              # --once gives up after this many failures in a row
QUEUE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2


class Unavailable(Exception):
    """Zaqar did not do what was asked; ``hint`` says what to check."""

    def __init__(self, text: str, hint: str = ""):
        super().__init__(text)
        self.hint = hint


class Refused(Exception):
    """Zaqar refused the request as invalid (400): retrying will not help."""


class Stop(Exception):
    """The consumer must stop with this exit code (message already printed)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


# ---------------------------------------------------------------------------------
# python-zaqarclient plumbing (forwarders.sinks.zaqar.client) and auth.

def auth_opts(project: str, token: str | None) -> dict:
    """No auth (a local Zaqar) sends only X-Project-ID; a token adds X-Auth-Token."""
    if token:
        return {"backend": "keystone",
                "options": {"os_auth_token": token, "os_project_id": project}}
    return {"backend": "noauth", "options": {"project_id": project}}


def _delete_claimed(message) -> bool:
    """Delete one message under its claim; False if Zaqar says another claim holds
    it (403). An expired claim is a 400 (MalformedRequest: Refused)."""
    try:
        message.delete()
    except transport_errors.ForbiddenError:
        return False
    return True


# ---------------------------------------------------------------------------------

class Stopper:
    """SIGINT/SIGTERM: the first finishes the request or batch in progress (each
    request is bounded by --timeout) and stops; a second stops at once."""

    def __init__(self, err):
        self.event = threading.Event()
        self.err = err

    def __call__(self, signum, frame):
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        try:        # os.write: the handler may interrupt a write to the same stream
            os.write(self.err.fileno(), f"{time.strftime('%H:%M:%S')} stopping (again "
                     "to stop at once)\n".encode())
        except (AttributeError, OSError, ValueError):
            pass

    def sleep(self, seconds: float) -> None:
        self.event.wait(seconds)


class Consumer:
    def __init__(self, args, state: telco.State, out, err, stopper: Stopper):
        self.args = args
        self.state = state
        self.out = out
        self.err = err
        self.stopper = stopper
        self.transport = _Transport(args.timeout)
        self.client = _Client(args.zaqar_url, {
            "auth_opts": auth_opts(args.project, args.auth_token),
            "client_uuid": str(uuid.uuid4())}, self.transport)
        self.queue = self.client.queue(args.queue, auto_create=False)
        self.delete_mode = args.delete
        self.claim = None                   # claimed and not yet deleted
        self.pending = None                 # a saved batch whose delete failed
        self.output_closed = False
        self.counts = dict.fromkeys(
            ("messages", telco.APPLY, telco.DUPLICATE, telco.STALE, telco.MALFORMED,
             "batches"), 0)
        self.timing = {"claim": 0.0, "state": 0.0, "delete": 0.0}

    def warn(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=self.err, flush=True)

    # -- Zaqar calls, errors turned into Unavailable / Refused ----------------------
    def _call(self, what: str, fn, *args, **kwargs):
        url = self.args.zaqar_url
        try:
            return fn(*args, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unavailable(
                f"cannot {what}: Zaqar at {url} does not answer ({type(exc).__name__})",
                "check that Zaqar is running (locally: `python3 scripts/servers.py "
                "status`) and that --zaqar-url is its endpoint (http(s)://host:port, "
                "no /v2)") from None
        except (transport_errors.UnauthorizedError, transport_errors.ForbiddenError) as exc:
            raise Unavailable(
                f"cannot {what}: Zaqar at {url} refused the credentials ({exc})",
                f"check --auth-token (valid, not expired) and --project "
                f"{self.args.project!r}") from None
        except transport_errors.MalformedRequest as exc:
            raise Refused(f"cannot {what}: Zaqar at {url} refused the request ({exc})") \
                from None
        except (transport_errors.TransportError, requests.RequestException,
                ValueError) as exc:
            raise Unavailable(f"cannot {what}: Zaqar at {url} answered {exc}") from None

    def _claim(self):
        started = time.monotonic()
        claim = self._call("claim messages", self.queue.claim, ttl=self.args.claim_ttl,
                           grace=self.args.grace, limit=self.args.batch)
        self.timing["claim"] += time.monotonic() - started
        return claim

    def release(self) -> None:
        """Give the current claim's messages back (best effort: they come back anyway
        when the claim expires)."""
        claim, self.claim, self.pending = self.claim, None, None
        if claim is not None and claim.id:
            try:
                self._call("release the claim", claim.delete)
            except (Unavailable, Refused) as exc:
                self.warn(f"WARNING {exc}; its messages come back after "
                          f"{self.args.claim_ttl} s")

    def _delete(self, messages) -> None:
        started = time.monotonic()
        if self.delete_mode == "bulk":
            try:
                self._call("delete messages", self.queue.delete_messages,
                           *[m.id for m in messages])
            except Refused as exc:
                # e.g. a Zaqar with message_delete_with_claim_id = True, which the
                # client's bulk delete cannot satisfy: delete one by one, with the claim
                self.warn(f"bulk delete refused ({exc}); deleting one message at a "
                          "time from now on")
                self.delete_mode = "each"
        if self.delete_mode == "each":
            for m in messages:
                try:
                    if not self._call("delete a message", _delete_claimed, m):
                        self.warn(f"WARNING message {m.id} not deleted: another claim "
                                  "holds it (it will be skipped when it comes back)")
                except Refused as exc:
                    self.warn(f"WARNING message {m.id} not deleted ({exc}); it will "
                              "come back and be skipped")
        self.timing["delete"] += time.monotonic() - started

    # -- one batch -------------------------------------------------------------------
    def batch(self) -> int:
        """Claim, decide, save, print, delete. Returns the number of messages.

        A batch whose delete failed is saved already: the next call retries its
        delete (it stays claimed meanwhile) before claiming anything else."""
        if self.pending is not None:
            messages = self.pending
            self._delete(messages)
            self.pending = self.claim = None
            return len(messages)
        self.claim = None
        self.claim = self._claim()
        messages = list(self.claim)
        if not messages:
            self.claim = None
            return 0
        plan = self.state.plan((m.id, m.body) for m in messages)
        if plan.updates:
            started = time.monotonic()
            telco.save_state(self.args.state_file, self.state.with_batch(plan))
            self.timing["state"] += time.monotonic() - started
            self.state.commit(plan)
        self.counts["messages"] += len(messages)
        self.counts["batches"] += 1
        for decision in (telco.APPLY, telco.DUPLICATE, telco.STALE, telco.MALFORMED):
            self.counts[decision] += plan.count(decision)
        for outcome in plan.malformed:
            self.warn(f"WARNING malformed message {outcome.message_id} in "
                      f"{self.args.project}/{self.args.queue}: {outcome.reason}; "
                      "deleting it")
        if plan.lines and not self.output_closed:
            try:
                self.out.write("".join(line + "\n" for line in plan.lines))
                self.out.flush()
            except BrokenPipeError:
                # stdout's reader went away (`| head`): the batch is applied and
                # saved, so delete it and stop
                self.output_closed = True
                self.stopper.event.set()
        if self.args.crash_before_delete:          # test hook: a real crash here
            self.err.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self.pending = messages
        self._delete(messages)
        self.pending = self.claim = None
        return len(messages)

    # -- the loop --------------------------------------------------------------------
    def run(self) -> int:
        """Batches until stopped (or, with --once, until the queue is empty). Zaqar
        failing is retried with searchlight-forward's retry policy (backoff with
        jitter; --once gives up after ONCE_ATTEMPTS attempts)."""
        retry = Retry(
            Policy(initial=ERROR_BACKOFF[0], maximum=ERROR_BACKOFF[1],
                   attempts=ONCE_ATTEMPTS if self.args.once else None),
            f"Zaqar at {self.args.zaqar_url}", stop_event=self.stopper.event,
            classify=lambda exc: isinstance(exc, Unavailable), on_retry=self._retrying)
        idle = 0
        while not self.stopper.event.is_set():
            failures = retry.retries
            try:
                got = retry.call(self.batch)
            except Stopping:
                break
            except Unavailable as exc:
                self.warn(f"ERROR {exc}{self._pending_hint()}; giving up after "
                          f"{ONCE_ATTEMPTS} attempts (--once)")
                return EXIT_UNAVAILABLE
            except Refused as exc:
                self.warn(f"ERROR {exc}; check --claim-ttl, --grace and --batch against "
                          "this Zaqar's limits")
                return EXIT_USAGE
            if retry.retries > failures:
                self.warn(f"Zaqar at {self.args.zaqar_url} answers again")
            if got:
                idle = 0
                continue
            if self.args.once:
                return EXIT_OK
            idle += 1
            self.stopper.sleep(min(IDLE_BACKOFF[1], IDLE_BACKOFF[0] * 2 ** (idle - 1)))
        return EXIT_OK

    def _pending_hint(self) -> str:
        return (" (the batch is applied and saved; its delete is retried, or it comes "
                "back and is skipped)") if self.pending is not None else ""

    def _retrying(self, exc: BaseException, attempt: int, wait: float) -> None:
        hint = f"; {exc.hint}" if getattr(exc, "hint", "") and attempt == 1 else ""
        self.warn(f"ERROR {exc}{hint}{self._pending_hint()}; retrying in {wait:.1f} s")

    def summary(self, seconds: float) -> str:
        c, t = self.counts, self.timing
        rate = c["messages"] / seconds if seconds > 0 else 0.0
        return (f"{c['messages']} messages in {seconds:.1f} s ({rate:.0f}/s, "
                f"{c['batches']} batches): {c[telco.APPLY]} applied, "
                f"{c[telco.DUPLICATE]} duplicate, {c[telco.STALE]} stale, "
                f"{c[telco.MALFORMED]} malformed; {len(self.state.resources)} resources "
                f"in {self.args.state_file} (time in claims {t['claim']:.1f} s, state "
                f"writes {t['state']:.1f} s, deletes {t['delete']:.1f} s)")

    def close(self) -> None:
        self.transport.close()


# ---------------------------------------------------------------------------------

def default_state_file(project: str, queue: str) -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", project)
    return os.path.join(base, "searchlight-forward", f"telco-{safe}-{queue}.json")


def _int_range(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}..{high}")
        return value
    return parse


def _queue_name(text: str) -> str:
    if not QUEUE_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a queue name has 1 to 64 ASCII letters, digits, '-' or '_'")
    return text


def _url(text: str) -> str:
    if not re.match(r"^https?://[^/\s]+/?$", text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected http(s)://host[:port] (no path, no /v2)")
    return text.rstrip("/")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Claim envelopes from a Zaqar queue, apply each change once per "
                    "(id, version), delete them, print one line per applied change. "
                    "See docs/telco-consumer.md.")
    p.add_argument("--zaqar-url", type=_url, default=DEFAULT_URL,
                   help=f"Zaqar endpoint (default {DEFAULT_URL})")
    p.add_argument("--project", required=True,
                   help="Zaqar project the queue belongs to (X-Project-ID), e.g. ops")
    p.add_argument("--queue", type=_queue_name, default="openstack-resources",
                   help="queue name (default openstack-resources)")
    p.add_argument("--state-file",
                   help="where the last applied version per resource is kept (default "
                        "$XDG_STATE_HOME/searchlight-forward/telco-<project>-<queue>.json)")
    p.add_argument("--once", action="store_true",
                   help="drain what is in the queue, then exit")
    p.add_argument("--claim-ttl", type=_int_range(MIN_CLAIM, MAX_CLAIM), default=60,
                   help="seconds a claimed batch stays hidden from other claims "
                        "(default 60; a crash brings the batch back after this)")
    p.add_argument("--grace", type=_int_range(MIN_CLAIM, MAX_CLAIM), default=60,
                   help="seconds added to claimed messages' lifetime (default 60)")
    p.add_argument("--batch", type=_int_range(1, MAX_PER_CLAIM), default=MAX_PER_CLAIM,
                   help=f"messages per claim (default and Zaqar's maximum {MAX_PER_CLAIM})")
    p.add_argument("--auth-token",
                   help="Keystone token sent as X-Auth-Token (not needed without auth)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="HTTP connect and read timeout, seconds (default 10)")
    p.add_argument("--delete", choices=("bulk", "each"), default="bulk",
                   help="bulk: one request per batch (default); each: one request per "
                        "message, each checked against the claim")
    # Test hook: SIGKILL itself after printing a batch, before deleting it.
    p.add_argument("--crash-before-delete", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 0.1 <= args.timeout <= 3600:
        p.error("--timeout: expected 0.1 to 3600 seconds")
    args.state_file = os.path.abspath(
        args.state_file or default_state_file(args.project, args.queue))
    return args


def _lock(path: str, err):
    """Hold ``<state file>.lock`` for the life of the process: two consumers on one
    state file would each apply half of the queue and overwrite each other's file."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        print(f"{PROG}: cannot use the state file's directory {directory}: {exc}",
              file=err)
        raise Stop(EXIT_USAGE) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        print(f"{PROG}: another consumer is using {path} (locked: {path}.lock)",
              file=err)
        raise Stop(EXIT_USAGE) from None
    return fd


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    try:
        lock = _lock(args.state_file, err)
    except Stop as stop:
        return stop.code
    try:
        try:
            state = telco.load_state(args.state_file)
        except telco.StateFileError as exc:
            print(f"{PROG}: {exc}", file=err)
            return EXIT_USAGE
        stopper = Stopper(err)
        consumer = Consumer(args, state, out, err, stopper)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, stopper)
        consumer.warn(
            f"telco consumer: {args.project}/{args.queue} at {args.zaqar_url}, state "
            f"{args.state_file} ({len(state.resources)} resources known), claims of "
            f"{args.batch} (ttl {args.claim_ttl} s, grace {args.grace} s)"
            + (", until the queue is empty" if args.once else ""))
        started = time.monotonic()
        code = EXIT_OK
        try:
            code = consumer.run()
            consumer.release()          # a batch whose delete never succeeded
        except KeyboardInterrupt:
            consumer.release()
            consumer.warn("interrupted")
        except telco.StateFileError as exc:
            consumer.release()
            consumer.warn(f"ERROR {exc}; nothing of this batch was deleted from Zaqar")
            code = EXIT_UNAVAILABLE
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            consumer.close()
            if consumer.output_closed and out is sys.__stdout__:
                # no "Exception ignored ... BrokenPipeError" when Python flushes at exit
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, out.fileno())
                os.close(devnull)
        consumer.warn(consumer.summary(time.monotonic() - started))
        return code
    finally:
        os.close(lock)


if __name__ == "__main__":
    sys.exit(main())
