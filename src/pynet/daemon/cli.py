"""``pynet agent``: parse flags, set up logging and signals, run the :class:`~pynet.daemon.app.Agent`.

Exit codes: 0 success (or clean stop), 1 runtime failure (``--once`` sync failed, backend
unavailable), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from pynet._log import get_logger, setup_logging
from pynet.daemon import config as config_mod
from pynet.daemon.app import Agent, AgentError, run_cleanup
from pynet.daemon.config import AgentConfig
from pynet.errors import ConfigError

__all__ = ["add_arguments", "run"]

log = get_logger("pynet.daemon")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_mod.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    setup_logging(getattr(args, "log_level", "INFO"))
    try:
        cfg = AgentConfig.from_args(args)
    except ConfigError as err:
        print(f"pynet agent: {err}", file=sys.stderr)
        return 2
    if cfg.cleanup:
        return run_cleanup(cfg)
    agent = Agent(cfg)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal received, stopping", extra={"kv": {"signal": signal.Signals(signum).name}})
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return agent.run()
    except (AgentError, ConfigError) as err:
        log.error(str(err))
        print(f"pynet agent: {err}", file=sys.stderr)
        return 1
