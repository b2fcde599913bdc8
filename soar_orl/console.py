"""What `soar run` shows on the terminal, and where everything else goes (`logging.verbose`).

The terminal gets soar-orl's own lines: set-up progress, the progress bar, one line per outer
step, warnings and errors, the final table and where the files are. Everything else goes to
RUN_DIR/logs/run.log: what the driver process, its libraries and its child processes write
(OpenRLHF's trainers and their bars, vLLM engine cores, DeepSpeed, library warnings), the output
of every Ray worker, which Ray forwards to the driver from every node with its
`(ActorName pid=...)` prefix, and every log record, soar-orl's included. With
`logging.verbose: true` all of it stays on the terminal, as without this module.

How: once the run directory exists (`log_to`), the driver's file descriptors 1 and 2 are pointed
at the log file (what they got before, e.g. DeepSpeed's and vLLM's import-time messages, waits
in a temporary file and goes first into the log), so that writes from C code and from child processes land there as well, and
the terminal's own descriptors are kept for `terminal_out` and `terminal_err`, which the progress
bars, the step lines and the final table write to. Nothing here differs between CPU and GPU.
A run that fails says where its log is; its traceback is in the log and on the terminal.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # a leaf module: it imports no other part of soar_orl
    from soar_orl.config import LoggingConfig

LOG_DIR = "logs"
LOG_FILE = "run.log"
# Loggers whose records are soar-orl's own: "soar" and the modules' getLogger(__name__).
OWN_LOGGERS = frozenset({"soar", "soar_orl"})
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_HEADER = "===== soar-orl"  # starts each invocation's part of the log (a resume appends to it)


def shown_on_terminal(logger_name: str, level: int) -> bool:
    """Whether a log record reaches the terminal while the run's output goes to its log:
    soar-orl's own records (at logging.level), other libraries' only from ERROR up."""
    return logger_name.split(".", 1)[0] in OWN_LOGGERS or level >= logging.ERROR


def terminal_line(clock: str, level: int, message: str, log_file: Path | None) -> str:
    """One record as the terminal shows it: time and message; warnings and errors say their
    level and, while the rest goes to a log, where it is (a dead worker's output is there)."""
    if level < logging.WARNING:
        return f"{clock} {message}"
    where = f" [log: {log_file}]" if log_file is not None else ""
    return f"{clock} {logging.getLevelName(level)} {message}{where}"


class _Console:
    """One `soar run`'s terminal: the logging handler on it and, once diverted, the terminal's
    kept streams and the log file."""

    def __init__(self, cfg: LoggingConfig) -> None:
        self.verbose = cfg.verbose
        self.out: TextIO | None = None
        self.err: TextIO | None = None
        self.log_file: Path | None = None
        self.log: TextIO | None = None  # the log file, for log records and tracebacks
        self.held = None  # output written before the run directory exists (`hold`)
        self.handlers: list[logging.Handler] = []
        # Records from before the run directory exists (import-time library warnings, which
        # captureWarnings makes records), kept for the log.
        self.early = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)

    def hold(self) -> None:
        """Until the run directory exists, what is written to descriptors 1 and 2 (import-time
        messages of DeepSpeed and vLLM) waits in a temporary file: for the log, or for the
        terminal if the run stops before it has one."""
        sys.stdout.flush()
        sys.stderr.flush()
        encoding = sys.stdout.encoding or "utf-8"
        self.out = os.fdopen(os.dup(1), "w", buffering=1, encoding=encoding, errors="backslashreplace")
        self.err = os.fdopen(os.dup(2), "w", buffering=1, encoding=encoding, errors="backslashreplace")
        self.held = tempfile.TemporaryFile()
        os.dup2(self.held.fileno(), 1)
        os.dup2(self.held.fileno(), 2)

    def _held_output(self) -> bytes:
        sys.stdout.flush()
        sys.stderr.flush()
        if self.held is None:
            return b""
        self.held.seek(0)
        data = self.held.read()
        self.held.close()
        self.held = None
        return data

    def divert(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.log_file = folder / LOG_FILE
        held = self._held_output()
        self.log = open(self.log_file, "a", buffering=1, encoding="utf-8", errors="backslashreplace")
        self.log.write(f"{LOG_HEADER} {time.strftime('%Y-%m-%d %H:%M:%S')}: soar {' '.join(sys.argv[1:])}\n")
        self.log.flush()
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_APPEND)
        os.write(log_fd, held)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        # Ray colours the prefixes of forwarded worker lines unless told not to: escape codes in a file.
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        to_log = logging.StreamHandler(self.log)  # every record, in full
        self._add_handler(to_log, logging.Formatter(LOG_FORMAT))
        self.early.setTarget(to_log)
        self.early.flush()
        logging.getLogger().removeHandler(self.early)
        return self.log_file

    def restore(self) -> None:
        """The terminal back on descriptors 1 and 2 (what runs after the session writes there)."""
        if self.out is None or self.err is None:
            return
        held = self._held_output()  # the run stopped before its directory existed: show it all
        if held:
            self.err.flush()
            os.write(self.err.fileno(), held)
        for stream, fd in ((self.out, 1), (self.err, 2)):
            stream.flush()
            os.dup2(stream.fileno(), fd)
            stream.close()
        self.out = self.err = None

    def _add_handler(self, handler: logging.Handler, formatter: logging.Formatter) -> None:
        handler.setFormatter(formatter)
        logging.getLogger().addHandler(handler)
        self.handlers.append(handler)

    def close(self) -> None:
        self.restore()
        for handler in self.handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
        self.handlers.clear()
        if self.log is not None:
            self.log.close()
            self.log = None


class _TerminalHandler(logging.Handler):
    """Log records on the terminal, written through tqdm so that none lands inside a progress bar."""

    def __init__(self, console: _Console) -> None:
        super().__init__()
        self.console = console
        if not console.verbose:
            self.addFilter(lambda record: shown_on_terminal(record.name, record.levelno))

    def format(self, record: logging.LogRecord) -> str:
        if self.console.verbose:
            return super().format(record)
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        return terminal_line(time.strftime("%H:%M:%S", time.localtime(record.created)), record.levelno, message,
                             self.console.log_file)

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=terminal_err())
        except Exception:
            self.handleError(record)


_active: _Console | None = None


@contextmanager
def console_session(cfg: LoggingConfig) -> Iterator[None]:
    """The terminal of one `soar run`: log records on it (all with logging.verbose, else only
    soar-orl's and errors), and the rest of the output diverted to the run's log once `log_to`
    names the run directory. A failure inside names the log on the terminal before its traceback."""
    global _active
    console = _Console(cfg)
    root = logging.getLogger()
    level = root.level
    root.setLevel(cfg.level)
    console._add_handler(_TerminalHandler(console), logging.Formatter(LOG_FORMAT))
    if not cfg.verbose:
        console.hold()
        console._add_handler(console.early, logging.Formatter(LOG_FORMAT))
        logging.captureWarnings(True)  # library warnings: records for the log, not lines on the terminal
    _active = console
    try:
        yield
    except BaseException as err:
        if console.log is not None:
            traceback.print_exc(file=console.log)  # the terminal gets it from the caller, after the restore
            console.restore()
            print(f"the run stopped on {type(err).__name__}; its full log, every Ray worker's output included: "
                  f"{console.log_file}", file=sys.stderr, flush=True)
        raise
    finally:
        _active = None
        console.close()
        root.setLevel(level)
        logging.captureWarnings(False)


def log_to(run_path: Path) -> Path | None:
    """Send everything but soar-orl's own lines to RUN_PATH/logs/run.log (appended: a resumed run
    continues its log) until the session ends. Does nothing outside a `console_session`, with
    logging.verbose, or once diverted (a run's RLVR baselines log into the run's file). Returns
    the log file, None when the output stays on the terminal."""
    if _active is None or _active.verbose:
        return None
    if _active.log_file is None:
        log_file = _active.divert(Path(run_path) / LOG_DIR)
        logging.getLogger("soar").info("logs: %s (logging.verbose=true shows them here)", log_file)
    return _active.log_file


def terminal_out() -> TextIO:
    """The terminal's stdout, also while the rest of the output goes to the log."""
    return _active.out if _active is not None and _active.out is not None else sys.stdout


def terminal_err() -> TextIO:
    """The terminal's stderr (progress bars, log records), also while the rest goes to the log."""
    return _active.err if _active is not None and _active.err is not None else sys.stderr
