"""Math answer checking: Math-Verify behind a hard time limit, and the formatting-only match.

Why a worker process: Math-Verify's own timeout is `signal.alarm`, which only works in the main
thread and cannot interrupt sympy while it is inside C code (9^{9^{9^9}} computes a 370-million
digit integer; 10,000 nested braces hang the LaTeX parser). Our callers are reward functions
running in threads of Ray actors. So every check runs in one persistent subprocess, started on
first use, and the parent waits at most `timeout_s` for each reply. On a timeout or a crash the
worker is killed and restarted on the next check; the check counts as failed (the caller treats
that as a wrong answer) and is logged. Model output is only ever parsed, never evaluated.

The worker is this module run as a script: `python -m soar_orl.tasks.verify MEMORY_LIMIT_MB`.
Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

logger = logging.getLogger(__name__)

# The formatting `is_reference_text` ignores: text wrappers (`\text{...}` and kin: the wrapper
# goes, its content stays), `$`, whitespace, `\left`/`\right`, and LaTeX spacing (`\!`, `\,`,
# `\;`, `\:`, `\ `, `~`, `\quad`, `\qquad`). Escaped characters (`\{`, `\$`) are kept as written.
_TEXT_WRAPPER = r"(?P<wrapper>\\(?:text|textrm|textbf|textit|textnormal|textup|mathrm|mbox)\s*\{)"
_FORMATTING = r"(?P<formatting>\$|\s|~|\\(?:left|right|quad|qquad)(?![A-Za-z])|\\[!,;: ])"
_NORMALISE_TOKEN = re.compile(rf"{_TEXT_WRAPPER}|{_FORMATTING}|\\.|[{{}}]", re.DOTALL)


def normalise_answer_text(text: str) -> str:
    """`text` without the formatting listed above. One pass, linear in len(text), no recursion."""
    wrapper_braces: list[bool] = []  # one per open brace: did a text wrapper open it?

    def keep(token: re.Match[str]) -> str:
        if token.group("wrapper"):
            wrapper_braces.append(True)
            return ""
        if token.group("formatting"):
            return ""
        if token.group() == "{":
            wrapper_braces.append(False)
        elif token.group() == "}" and wrapper_braces and wrapper_braces.pop():
            return ""
        return token.group()

    return _NORMALISE_TOKEN.sub(keep, text)


def is_reference_text(answer: str, reference: str) -> bool:
    """Is a box's content the reference itself, written with other formatting (see above)?

    The graders give partial credit (Outcome.UNVERIFIED) to this box alone when their verifier
    does not confirm it; every other box that fails verification is wrong. Equality, not
    containment: a short reference ("x", "1") is contained in almost any unreadable box
    (`x^{x^{x^{...}}}` contains `x`), so containment would pay more for junk than for an
    honest wrong answer.
    """
    expected = normalise_answer_text(reference)
    return bool(expected) and normalise_answer_text(answer) == expected


class Verdict(str, enum.Enum):
    """Result of comparing an answer with a reference."""

    EQUAL = "equal"
    NOT_EQUAL = "not_equal"  # including answers or references Math-Verify reads no expression from
    FAILED = "failed"  # timed out or crashed the worker; callers count it as wrong


@dataclass(frozen=True)
class VerifyParams:
    """Limits of the verification worker."""

    timeout_s: float = 5.0  # hard limit per check, measured in the calling process
    startup_timeout_s: float = 120.0  # importing sympy on a busy 2-core machine can take a while
    memory_limit_mb: int = 4096  # address-space cap of the worker (0 = none): 9^9^9 can also eat RAM

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.startup_timeout_s <= 0:
            raise ValueError(f"timeouts must be positive, got {self}")
        if self.memory_limit_mb < 0:
            raise ValueError(f"memory_limit_mb must be >= 0, got {self.memory_limit_mb}")


class MathVerifier:
    """Thread-safe client of the verification worker; use as a context manager or call close().

    Checks are serialised through one worker (a lock), so concurrent callers wait their turn;
    each check still has its own hard limit, so nobody waits more than about timeout_s per
    queued check.
    """

    def __init__(self, params: VerifyParams | None = None) -> None:
        self.params = params or VerifyParams()
        self.num_failures = 0  # checks that timed out or crashed the worker, for metrics
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str | None] = queue.Queue()

    def verify(self, answer: str, reference: str) -> Verdict:
        """Is `answer` (a box's content) mathematically equal to `reference` (a label)?"""
        return self.verify_many([(answer, reference)])[0]

    def verify_many(self, pairs: Iterable[tuple[str, str]]) -> list[Verdict]:
        """Verdicts for (answer, reference) pairs, in order, reusing one warm worker."""
        with self._lock:
            replies = [self._call({"op": "verify", "answer": a, "reference": r}) for a, r in pairs]
        return [Verdict.FAILED if reply is None else Verdict(reply) for reply in replies]

    def parses(self, answer: str) -> bool:
        """Does Math-Verify read an expression (not just raw text) from `answer`? Failure = no."""
        with self._lock:
            return self._call({"op": "parse", "answer": answer}) is True

    def close(self) -> None:
        with self._lock:
            self._stop_worker()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self._stop_worker()

    # ---------------------------------------------------------------- worker management

    def _call(self, request: dict[str, str]) -> object | None:
        """Send one request and wait for its reply; None (logged) on timeout or worker death."""
        proc = self._proc or self._start_worker()
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            line = self._replies.get(timeout=self.params.timeout_s)
            problem = "exited" if line is None else None
        except queue.Empty:
            line, problem = None, f"timed out after {self.params.timeout_s:g}s"
        except BrokenPipeError:
            line, problem = None, "exited"
        if line is None:
            self.num_failures += 1
            logger.warning(
                "math check %s; counted as wrong, worker stopped (restarts on the next check). request=%s",
                problem,
                _shorten(json.dumps(request)),
            )
            self._stop_worker()
            return None
        return json.loads(line)

    def _start_worker(self) -> subprocess.Popen[str]:
        # The worker imports this package: make sure it finds the same copy as we did.
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.params.memory_limit_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
        )
        self._replies = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(proc.stdout, self._replies), daemon=True).start()
        try:
            ready = self._replies.get(timeout=self.params.startup_timeout_s)
        except queue.Empty:
            ready = None
        if ready is None or json.loads(ready) != "ready":
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"math-verify worker exited or did not start within {self.params.startup_timeout_s:g}s "
                f"(is math-verify installed for {sys.executable}? its stderr is above)"
            )
        self._proc = proc
        return proc

    def _stop_worker(self) -> None:
        proc, self._proc = getattr(self, "_proc", None), None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def _pump(stream: IO[str], replies: queue.Queue[str | None]) -> None:
    """Reader thread: forward the worker's reply lines; None marks its end."""
    try:
        for line in stream:
            replies.put(line)
    except (OSError, ValueError):  # the pipe was closed under us by _stop_worker
        pass
    replies.put(None)


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


# -------------------------------------------------------------------- worker side


def _serve(memory_limit_mb: int) -> None:
    """Worker loop. Stdout is reserved for replies; anything a library prints goes to stderr."""
    import functools

    # Math-Verify logs every parse failure and warns that we disabled its signal timeouts:
    # expected here, since the parent enforces the time limit.
    logging.disable(logging.WARNING)
    from math_verify import parse, verify

    replies, sys.stdout = sys.stdout, sys.stderr
    if memory_limit_mb:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    @functools.lru_cache(maxsize=4096)  # references repeat across the samples of a problem
    def parsed(answer: str) -> list[object]:
        # Both sides go through the same wrapper, so the comparison is symmetric in form.
        return parse("\\boxed{" + answer + "}", parsing_timeout=None)

    def readable(parses: list[object]) -> bool:
        # Math-Verify falls back to the raw string when it finds no expression ("=", "?").
        return any(not isinstance(item, str) for item in parses)

    def handle(request: dict[str, str]) -> object:
        answer = parsed(request["answer"])
        if request["op"] == "parse":
            return readable(answer)
        reference = parsed(request["reference"])
        if answer and reference and verify(reference, answer, timeout_seconds=None):
            return Verdict.EQUAL.value
        return Verdict.NOT_EQUAL.value

    def reply(obj: object) -> None:
        replies.write(json.dumps(obj) + "\n")
        replies.flush()

    reply("ready")
    for line in sys.stdin:
        reply(handle(json.loads(line)))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
