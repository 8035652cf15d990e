"""Command-line entry point: `edge run`, `edge check-config`, `edge subscribe`, `edge models ...`, `edge web`."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

from edge import __version__

log = logging.getLogger("edge")


def setup_logging(level: str) -> None:
    from edge.ingest.redact import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=getattr(logging, level), handlers=[handler], force=True)


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge.config import ConfigError
    from edge.config.loader import web_only_fields
    from edge.plan import build_plan

    try:
        plan = build_plan(args.config)
    except ConfigError as error:
        error.print_report(args.config, sys.stderr)
        web_fields = web_only_fields(args.config)
        if web_fields:
            print(f"{args.config} looks like an `edge web` config (it has {', '.join(web_fields[:3])} and no cameras), "
                  f"but check-config checks site configs for `edge run`. `edge web --config {args.config}` checks a "
                  "web config when it starts.", file=sys.stderr)
        return 1
    print(f"{args.config}: OK, {len(plan.sources)} enabled camera(s), pipelines: {', '.join(plan.pipelines)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge.bus.publisher import PublisherError
    from edge.config import ConfigError
    from edge.daemon import Daemon, format_counters
    from edge.plan import build_plan, parse_source_overrides
    from edge.runtime.detector import DetectorError
    from edge.runtime.session import SessionError
    from edge.watchlist import WatchlistError

    try:
        plan = build_plan(args.config, parse_source_overrides(args.source))
    except ValueError as error:
        log.error("%s", error)
        return 2
    except ConfigError as error:
        for issue in error.issues:
            log.error("invalid config: %s", issue)
        if args.source:
            # check-config has no --source option, so it would pass a config that fails only with these values.
            log.error("not started: fix the %d error(s) above, in the config or in the --source values",
                      len(error.issues))
        else:
            log.error("not started: fix the %d error(s) above; `edge check-config %s` lists them",
                      len(error.issues), args.config)
        return 2

    daemon = Daemon(plan)

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        daemon.stop_event.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        exit_code = daemon.run(args.duration)
    except (PublisherError, DetectorError, SessionError, WatchlistError) as error:
        log.error("not started: %s", error)
        return 2
    print(format_counters(daemon))
    log.info("stopped after %.0f s with exit code %d", time.monotonic() - daemon.started_monotonic, exit_code)
    return exit_code


def silent_feed_hint(topics: list[str]) -> str:
    """Return what to check when a subscriber received no message at all."""
    if not topics:
        return "check that the daemon runs and that --endpoint is its publisher.endpoint"
    return ("check that the daemon runs, that --endpoint is its publisher.endpoint, and that --topic matches a "
            "topic it sends: det, health, plate, hit.plate or hit.face")


def cmd_subscribe(args: argparse.Namespace) -> int:
    from edge.bus.replay import ReplayError, subscribe_from
    from edge.bus.subscriber import subscribe

    import zmq

    if args.from_seq is None:
        messages = subscribe(args.endpoint, args.topic, args.timeout)
    else:
        messages = subscribe_from(args.endpoint, args.replay_endpoint, args.topic, args.from_seq, args.timeout)
    received = 0
    try:
        for message in messages:
            record = {"topic": message.topic, **message.header}
            if message.images:
                record["jpeg_bytes"] = [len(image) for image in message.images]
            print(json.dumps(record, ensure_ascii=False), flush=True)
            received += 1
            if args.count and received >= args.count:
                return 0
    except KeyboardInterrupt:
        return 0
    except zmq.ZMQError as error:
        print(f"cannot subscribe to {args.endpoint}: {error}; use an endpoint such as tcp://127.0.0.1:5556",
              file=sys.stderr)
        return 2
    except ReplayError as error:
        print(f"replay from sequence {args.from_seq} failed: {error}", file=sys.stderr)
        return 2
    if args.count:
        hint = f"; {silent_feed_hint(args.topic)}" if received == 0 else ""
        print(f"received {received} of {args.count} messages before {args.timeout} s passed with none{hint}",
              file=sys.stderr)
        return 1
    if received == 0:
        # A health check such as `edge subscribe --topic health --timeout 30` must fail on a silent daemon.
        print(f"received no message from {args.endpoint} within {args.timeout} s; {silent_feed_hint(args.topic)}",
              file=sys.stderr)
        return 1
    return 0


def whole_number_at_least(minimum: int, maximum: int | None = None):
    """Return an argparse type that parses a whole number of at least `minimum` and at most `maximum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be {minimum} or more")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text} must be {maximum} or less")
        return value

    return parse


non_negative_count = whole_number_at_least(0)
positive_count = whole_number_at_least(1)


def sequence_number(text: str) -> int:
    # Imported here, so that commands other than subscribe do not load ZeroMQ.
    from edge.bus.replay import MAX_SEQUENCE

    return whole_number_at_least(0, MAX_SEQUENCE)(text)


def cmd_models(args: argparse.Namespace) -> int:
    from edge.models.cli import run_models_command

    return run_models_command(args)


def positive_seconds(text: str) -> float:
    """Parse a duration in seconds that must be a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge", description="Video-analytics appliance for edge boxes.")
    parser.add_argument("--version", action="version", version=f"edge {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log verbosity (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the analytics daemon")
    run.add_argument("--config", required=True, type=Path, help="site config TOML file")
    run.add_argument("--duration", type=positive_seconds, default=None, metavar="S",
                     help="stop after S seconds (default: run until SIGINT or SIGTERM)")
    run.add_argument("--source", action="append", default=[], metavar="CAMERA_ID=URL_OR_PATH",
                     help="replace one camera's source; repeat for several cameras")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("check-config", help="validate a site config and everything it refers to")
    check.add_argument("config", type=Path, help="site config TOML file")
    check.set_defaults(handler=cmd_check_config)

    sub = commands.add_parser("subscribe", help="print feed messages as JSON lines")
    sub.add_argument("--endpoint", default="tcp://127.0.0.1:5556",
                     help="ZeroMQ endpoint of the daemon's feed to connect to (default: tcp://127.0.0.1:5556)")
    sub.add_argument("--topic", action="append", default=[], help="topic prefix such as det or health; repeatable")
    sub.add_argument("--count", type=positive_count, default=None, metavar="N",
                     help="exit after N messages (default: never)")
    sub.add_argument("--timeout", type=positive_seconds, default=None, metavar="S",
                     help="exit when no message arrives for S seconds, with status 1 if no message arrived "
                     "or, with --count N, if fewer than N arrived (default: wait forever)")
    sub.add_argument("--from-seq", type=sequence_number, default=None, metavar="N",
                     help="first print the stored hit and plate messages from sequence N on, fetched from "
                     "--replay-endpoint, then continue with the live feed, printing each sequence once")
    sub.add_argument("--replay-endpoint", default="tcp://127.0.0.1:5557",
                     help="ZeroMQ endpoint of the daemon's replay socket, used with --from-seq "
                     "(default: tcp://127.0.0.1:5557)")
    sub.set_defaults(handler=cmd_subscribe)

    models = commands.add_parser("models", help="list, verify or fetch models and demo media")
    models_commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    models_commands.add_parser("list", help="list manifest entries and where each file was found")
    verify = models_commands.add_parser("verify", help="check the sha256 of every file found")
    verify.add_argument("--all", action="store_true", help="also fail when an entry's file is missing")
    fetch = models_commands.add_parser("fetch", help="download entries into models/ and media/")
    fetch.add_argument("names", nargs="*", help="entry names (default: every entry with a download address)")
    fetch.add_argument("--dir", type=Path, default=None, help="target folder (default: $EDGE_MODEL_DIR or $EDGE_MEDIA_DIR when set, else ./models or ./media)")
    models.set_defaults(handler=cmd_models)

    from edge.plates.bench import add_bench_parser
    from edge.watchlist.cli import add_watchlist_parser

    from edge.web.cli import add_web_parser

    add_watchlist_parser(commands)
    from edge.ingest.bench import add_bench_decode_parser

    from edge.runtime.bench_latency import add_bench_latency_parser
    from edge.runtime.bench_motion import add_bench_motion_parser
    from edge.runtime.bench_pipeline import add_bench_pipeline_parser

    bench_commands = add_bench_parser(commands)
    add_bench_decode_parser(bench_commands)
    add_bench_pipeline_parser(bench_commands)
    add_bench_latency_parser(bench_commands)
    add_bench_motion_parser(bench_commands)
    add_web_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.handler(args)
    except BrokenPipeError:
        # The reader of stdout went away, as `edge models list | head` does. Point stdout at /dev/null so that
        # the interpreter's final flush does not raise again, and exit quietly as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
