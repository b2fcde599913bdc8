"""What `soar run` shows on the terminal and what goes to the run's log (soar_orl/console.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import warnings
from pathlib import Path

import pytest

from soar_orl.config import LoggingConfig
from soar_orl.console import LOG_HEADER, console_session, log_to, shown_on_terminal, terminal_err, terminal_line, terminal_out


def test_the_terminal_shows_soar_records_and_only_the_errors_of_libraries() -> None:
    for name in ("soar", "soar_orl.meta.pool", "soar_orl.eval.sampling"):
        assert shown_on_terminal(name, logging.INFO) and shown_on_terminal(name, logging.WARNING)
    for name in ("ray", "vllm", "deepspeed", "openrlhf", "py.warnings", "soarx", "root"):
        assert not shown_on_terminal(name, logging.WARNING)
        assert shown_on_terminal(name, logging.ERROR)


def test_a_warning_on_the_terminal_names_the_log() -> None:
    log = Path("/runs/q/logs/run.log")
    assert terminal_line("01:02:03", logging.INFO, "step 0 | reward 0.1", log) == "01:02:03 step 0 | reward 0.1"
    assert terminal_line("01:02:03", logging.WARNING, "worker 0 died", log) == f"01:02:03 WARNING worker 0 died [log: {log}]"
    assert terminal_line("01:02:03", logging.ERROR, "boom", None) == "01:02:03 ERROR boom"


def _make_noise() -> None:
    """What libraries and child processes do: write to the file descriptors, log, warn."""
    os.write(1, b"(StudentWorker pid=7) Loading safetensors\n")
    os.write(2, b"a C-level warning\n")
    subprocess.run(["sh", "-c", "echo a child process line"], check=True)
    # A library logger that propagates to the root logger, as Math-Verify's does. vLLM's,
    # OpenRLHF's, Ray's and transformers' have their own handler on sys.stdout or sys.stderr: in a
    # run it writes to the diverted descriptor, but under pytest it writes to the capture of
    # whichever test first imported the library, so the test cannot use them.
    logging.getLogger("math_verify").warning("a library warning")


def test_a_run_diverted_to_its_log_keeps_its_own_lines_on_the_terminal(tmp_path: Path, capfd) -> None:
    root_handlers = list(logging.getLogger().handlers)
    with console_session(LoggingConfig(verbose=False)):
        logging.getLogger("soar").info("memory check skipped")  # before the run directory exists
        warnings.warn("an import-time warning", FutureWarning)
        os.write(2, b"[WARNING] [real_accelerator.py] Setting accelerator to CPU\n")  # DeepSpeed, at import
        log_file = log_to(tmp_path)
        assert log_to(tmp_path / "baselines" / "hard_only") == log_file  # a baseline logs into the run's log
        _make_noise()
        logging.getLogger("soar").info("step 0 | reward 0.1")
        print("| base | 1.0 |", file=terminal_out())
        print("final evaluation: 3/4", file=terminal_err())
    assert log_file == tmp_path / "logs" / "run.log"
    out, err = capfd.readouterr()
    assert out == "| base | 1.0 |\n"
    assert "memory check skipped" in err and "step 0 | reward 0.1" in err and "final evaluation" in err
    assert f"logs: {log_file}" in err
    for noise in ("pid=7", "C-level", "child process", "library warning", "import-time", "accelerator"):
        assert noise not in out + err
    text = log_file.read_text()
    assert text.startswith(LOG_HEADER)
    for line in ("INFO soar: memory check skipped", "Setting accelerator to CPU", "FutureWarning: an import-time warning", "Loading safetensors", "a C-level warning", "a child process line", "WARNING math_verify: a library warning",
                 "INFO soar: step 0 | reward 0.1"):
        assert line in text
    os.write(1, b"after the session\n")  # the terminal is back on the descriptors
    assert capfd.readouterr().out == "after the session\n"
    assert logging.getLogger().handlers == root_handlers


def test_verbose_leaves_everything_on_the_terminal(tmp_path: Path, capfd) -> None:
    with console_session(LoggingConfig(verbose=True)):
        assert log_to(tmp_path) is None
        _make_noise()
    out, err = capfd.readouterr()
    assert "pid=7" in out and "a child process line" in out and "C-level" in err and "a library warning" in err
    assert not (tmp_path / "logs").exists()


def test_a_run_that_stops_before_its_directory_exists_shows_what_was_held(capfd) -> None:
    with pytest.raises(RuntimeError, match="run directory exists"):
        with console_session(LoggingConfig()):
            os.write(2, b"an import-time message\n")
            raise RuntimeError("run directory exists")
    assert "an import-time message" in capfd.readouterr().err


def test_a_failed_run_names_its_log_and_keeps_the_traceback(tmp_path: Path, capfd) -> None:
    with pytest.raises(RuntimeError, match="the teacher died"):
        with console_session(LoggingConfig()):
            log_file = log_to(tmp_path)
            raise RuntimeError("the teacher died")
    err = capfd.readouterr().err
    assert f"the run stopped on RuntimeError; its full log, every Ray worker's output included: {log_file}" in err
    assert "Traceback" in log_file.read_text() and "the teacher died" in log_file.read_text()
