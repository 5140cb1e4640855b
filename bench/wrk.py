"""wrk (the C load generator) fed pre-signed webhook bodies: found or installed, run, its summary read back.

wrk's Lua cannot compute an HMAC cheaply, so Python signs every body beforehand. Bodies are one template with
fields filled in (__F1__, __F2__, …); each line of a thread's file holds a signature and the fields, and the Lua
script rebuilds the very bytes Python signed. Two modes: `once` sends every line exactly once and stops (each
thread prints WRK_THREAD_DONE, the caller then ends the run); otherwise the lines are sent in a loop for the
duration, and `repeats` counts bodies sent a second time (duplicates, not new work: give more bodies).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.webhook.signature import sign

LUA = r'''
local TEMPLATE = [==[%(template)s]==]
local PREFIX = "%(prefix)s"
local ONCE = %(once)s
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

-- Thread state (globals, so that done() can read them through thread:get).
lines = {}
position = 0
reserved = 0
answered = 0
built = 0
count = 0

function init(args)
  for line in io.lines(string.format("%%s-%%d.txt", PREFIX, id)) do
    lines[#lines + 1] = line
  end
  count = #lines
  wrk.method = "POST"
end

function request()
  built = built + 1
  position = position %% #lines + 1
  local line = lines[position]
  local tab = line:find("\t", 1, true)
  local body = TEMPLATE
  local n = 0
  for value in line:sub(tab + 1):gmatch("[^\t]+") do
    n = n + 1
    body = body:gsub("__F" .. n .. "__", value)
  end
  local headers = {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = line:sub(1, tab - 1)}
  return wrk.format(nil, nil, headers, body)
end

if ONCE then
  -- wrk asks delay() before every request: a connection reserves a line, or idles once none is left.
  function delay()
    if reserved < #lines then
      reserved = reserved + 1
      return 0
    end
    return 3600000
  end

  function response(status, headers, body)
    answered = answered + 1
    if answered == #lines then
      io.write("WRK_THREAD_DONE\n")
      io.flush()
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  -- wrk builds one request of thread 1 to check it and never sends it: not a repeat.
  local repeats = 0
  for n, thread in ipairs(threads) do
    repeats = repeats + math.max(0, thread:get("built") - thread:get("count") - (n == 1 and 1 or 0))
  end
  io.write(string.format(
    'WRK_RESULT {"requests": %%d, "duration_us": %%d, "status_errors": %%d, "connect": %%d, "read": %%d, ' ..
    '"write": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "repeats": %%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), repeats))
end
'''


@dataclass(frozen=True)
class Load:
    """What wrk saw in one measurement."""

    requests: int
    duration_us: int
    status_errors: int  # responses with a status above 399
    connect: int
    read: int
    write: int
    timeout: int
    p50_us: int
    p99_us: int
    repeats: int = 0  # requests built beyond each thread's lines: bodies sent a second time

    @property
    def ok(self) -> int:
        return self.requests - self.status_errors  # the apps measured never answer 3xx

    @property
    def per_second(self) -> float:
        return self.ok / (self.duration_us / 1e6)

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout


@dataclass(frozen=True)
class SignedBodies:
    """Files of pre-signed bodies, one per wrk thread, and the template they fill."""

    prefix: Path  # thread n reads <prefix>-<n>.txt
    template: str
    threads: int
    count: int


def ensure_wrk() -> str:
    """wrk's path; installs Debian's `wrk` as root when missing, else stops saying what to install."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: installing Debian's `wrk` with apt-get", file=sys.stderr)
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("error: this benchmark needs the HTTP load generator `wrk` (C, so it shares no GIL with the "
                     "server) and could not install it: install Debian's `wrk` (apt-get install -y wrk) or put a "
                     "wrk 4.x on PATH.")


def fill(template: str, values: Sequence[str]) -> str:
    """The body for one line: what the Lua script rebuilds, byte for byte."""
    body = template
    for n, value in enumerate(values, 1):
        body = body.replace(f"__F{n}__", value)
    return body


def write_signed_bodies(prefix: Path, template: str, rows: Iterable[Sequence[str]], secret: str,
                        threads: int) -> SignedBodies:
    """Sign `template` filled with each row; row i goes to thread i mod `threads`, so each keeps the global order."""
    assert "]==]" not in template
    files = [open(f"{prefix}-{n}.txt", "w", encoding="utf-8") for n in range(1, threads + 1)]
    count = 0
    try:
        for count, values in enumerate(rows, 1):
            # Lua reads the fields as tab-separated and uses them as gsub replacements, where % is special.
            assert all(value and "\t" not in value and "%" not in value and "\n" not in value for value in values)
            signature = sign(secret, fill(template, values).encode())
            files[(count - 1) % threads].write(signature + "\t" + "\t".join(values) + "\n")
    finally:
        for file in files:
            file.close()
    assert count >= threads, "every wrk thread needs at least one body"
    return SignedBodies(prefix, template, threads, count)


def write_script(bodies: SignedBodies, *, once: bool) -> Path:
    path = Path(f"{bodies.prefix}.lua")
    path.write_text(LUA % {"template": bodies.template, "prefix": bodies.prefix, "once": "true" if once else "false"})
    return path


def run_wrk(wrk: str, url: str, bodies: SignedBodies, *, connections: int, duration: float, timeout: int,
            once: bool = False) -> Load:
    """POST the bodies to `url` with `bodies.threads` threads; `once`: each exactly once, `duration` the bound."""
    script = write_script(bodies, once=once)
    seconds = max(1, round(duration))
    command = [wrk, "-t", str(bodies.threads), "-c", str(max(connections, bodies.threads)), "-d", f"{seconds}s",
               "--timeout", f"{timeout}s", "-s", str(script), url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    finished, output = 0, []
    for line in process.stdout:  # wrk ends by itself after -d at the latest
        output.append(line)
        if once and line.startswith("WRK_THREAD_DONE"):
            finished += 1
            if finished == bodies.threads:
                # wrk sleeps for its whole -d; SIGINT ends that sleep, it joins the (stopped) threads and reports.
                process.send_signal(signal.SIGINT)
    process.wait(timeout=timeout + 60)
    error = process.stderr.read() if process.stderr else ""
    results = [line for line in output if line.startswith("WRK_RESULT ")]
    if not results:
        raise RuntimeError(f"wrk failed ({process.returncode}): {''.join(output)[-2000:]}{error[-2000:]}")
    load = Load(**json.loads(results[-1].removeprefix("WRK_RESULT ")))
    if once and finished < bodies.threads:
        raise RuntimeError(f"wrk stopped after {seconds} s before every body was answered "
                           f"({finished} of {bodies.threads} threads done, {load.requests} requests): raise the bound")
    return load
