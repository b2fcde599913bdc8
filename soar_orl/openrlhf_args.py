"""OpenRLHF trainer namespaces built by OpenRLHF's own parser and checks.

OpenRLHF components read one nested namespace of dotted flags (`args.ds.zero_stage`). Building
it by hand drifts from upstream defaults; instead we run the trainer's real parser on an argv
made from a dict of dotted flags (patches/0002 exposes `build_parser` / `finalize_args`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any


def flags_to_argv(flags: Mapping[str, Any]) -> list[str]:
    """{"ds.zero_stage": 2, "ds.adam_offload": True, "x.list": [1, 2]} -> argv.

    True is a bare store_true flag, False and None are left out (the parser default applies).
    """
    argv: list[str] = []
    for key, value in flags.items():
        if value is None or value is False:
            continue
        argv.append(f"--{key}")
        if value is True:
            continue
        if isinstance(value, (list, tuple)):
            argv.extend(str(v) for v in value)
        else:
            argv.append(str(value))
    return argv


def openrlhf_args(flags: Mapping[str, Any]) -> SimpleNamespace:
    from openrlhf.cli.train_ppo_ray import build_parser, finalize_args

    return finalize_args(build_parser().parse_args(flags_to_argv(flags)))
