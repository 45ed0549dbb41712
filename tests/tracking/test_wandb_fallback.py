"""W&B never stops or slows training: no key, no network, a failing server or a failing call all fall back.

All with the real wandb package; "no network" is a local port where nothing listens, and a failing W&B server is a
local HTTP server that refuses every request.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger

from lightning_cgs import CollaborativeWandbLogger
from lightning_cgs.tracking.wandb_logger import has_wandb_credentials, resolve_wandb_mode, server_reachable
from tests.tracking.conftest import closed_local_url, digits_collaboration
from tests.tracking.wandb_records import OfflineRun, finish_and_load

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # the shape of a W&B key; no server knows it


def fit_and_collect(folder: Path, logger: CollaborativeWandbLogger) -> tuple[list[str], float, object]:
    """Fit two rounds with the CSV logger and ``logger``; the W&B warnings, the wall time and the module."""
    data, module, trainer, _ = digits_collaboration(folder, [CSVLogger(folder, name="csv"), logger], rounds=2)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, data)
    seconds = time.perf_counter() - started
    said = [str(w.message) for w in caught if "W&B" in str(w.message)]
    return said, seconds, module


def finished_run(logger: CollaborativeWandbLogger) -> OfflineRun:
    return finish_and_load(logger.experiment.settings.sync_dir)


def assert_finished_normally(folder: Path, module) -> None:
    assert module.round_index == 2
    report = json.loads(next(folder.glob("csv/version_*/fairness_report.json")).read_text())
    assert report["rounds"] == 2


def test_no_key_and_no_network_trains_normally_and_saves_the_run_offline(wandb_sandbox: Path) -> None:
    logger = CollaborativeWandbLogger(save_dir=wandb_sandbox, project="tests")  # mode="auto"
    said, _, module = fit_and_collect(wandb_sandbox, logger)

    assert_finished_normally(wandb_sandbox, module)
    assert logger.mode == "offline"
    assert len(said) == 1, said  # says so once
    assert "no W&B API key was found" in said[0] and "wandb sync" in said[0]
    # the run is saved for a later `wandb sync`, with every round
    assert f"wandb sync {logger.experiment.settings.sync_dir}" in said[0]
    run = finished_run(logger)
    assert [row["round"] for row in run.rows_with("round")] == [1, 2]


def test_a_key_without_network_falls_back_offline_quickly(wandb_sandbox: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    logger = CollaborativeWandbLogger(save_dir=wandb_sandbox, project="tests", mode="online", network_timeout=1.0)
    started = time.perf_counter()
    with pytest.warns(UserWarning, match=r"W&B logs offline: the W&B server http://127\.0\.0\.1:\d+ cannot be reached"):
        run = logger.experiment
    assert time.perf_counter() - started < 10  # no wait for W&B's own 90 s timeout
    assert logger.mode == "offline" and run.settings.mode in ("offline", "dryrun")


class _Refusing(http.server.BaseHTTPRequestHandler):
    """A W&B server that refuses every request as unauthorised (what an invalid key gets)."""

    def _refuse(self) -> None:
        body = b'{"errors": [{"message": "invalid api key"}]}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_wandb_start_falls_back_offline(wandb_sandbox: Path, monkeypatch, refusing_server: str) -> None:
    import wandb

    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", refusing_server)
    wandb.teardown()  # W&B reads the environment once per process
    logger = CollaborativeWandbLogger(save_dir=wandb_sandbox, project="tests", mode="online")
    said, _, module = fit_and_collect(wandb_sandbox, logger)

    assert_finished_normally(wandb_sandbox, module)
    assert logger.mode == "offline"
    assert len(said) == 1, said
    assert "the online start failed" in said[0]
    assert finished_run(logger).rows_with("report/agents")


def test_an_error_while_logging_disables_wandb_once_and_training_goes_on(wandb_sandbox: Path) -> None:
    logger = CollaborativeWandbLogger(save_dir=wandb_sandbox, project="tests", mode="offline")
    with pytest.warns(UserWarning, match=r"W&B failed while logging metrics \(TypeError: .*not JSON serializable"):
        logger.log_metrics({"not/a/number": object()})  # W&B refuses it
    assert logger.failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing more is said, nothing raises
        logger.log_metrics({"later": 1.0})
        logger.log_hyperparams({"lr": 0.1})


def test_the_mode_decision(wandb_sandbox: Path, monkeypatch) -> None:
    assert resolve_wandb_mode("offline") == ("offline", None)
    assert resolve_wandb_mode("disabled") == ("disabled", None)

    mode, reason = resolve_wandb_mode("auto")  # the sandbox has no key
    assert mode == "offline" and "no W&B API key" in reason

    netrc = wandb_sandbox / "netrc-with-key"
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    try:
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        netrc.write_text(f"machine 127.0.0.1:{listening.getsockname()[1]}\n  login user\n  password {FAKE_KEY}\n")
        monkeypatch.setenv("NETRC", str(netrc))
        monkeypatch.setenv("WANDB_BASE_URL", url)
        import wandb

        wandb.teardown()
        assert has_wandb_credentials(url)  # the entry that `wandb login` writes
        assert server_reachable(url, timeout=1.0)
        assert resolve_wandb_mode("auto") == ("online", None)

        monkeypatch.setenv("WANDB_MODE", "offline")  # the user's own choice wins in "auto" ...
        wandb.teardown()
        assert resolve_wandb_mode("auto") == ("offline", None)
        assert resolve_wandb_mode("online") == ("online", None)  # ... but not over an explicit mode
    finally:
        listening.close()
        wandb.teardown()

    closed = closed_local_url()
    started = time.perf_counter()
    assert not server_reachable(closed, timeout=1.0)
    assert time.perf_counter() - started < 1.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"mode": "cloud"},
            r"Expected argument `mode` to be one of \['auto', 'online', 'offline', 'disabled'\], but got 'cloud'",
        ),
        ({"network_timeout": 0}, r"Expected argument `network_timeout` to be a number > 0, but got 0"),
        ({"network_timeout": True}, r"Expected argument `network_timeout` to be a number > 0, but got True"),
    ],
)
def test_arguments_are_validated_at_construction(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CollaborativeWandbLogger(**options)


def test_offline_true_is_offline_mode_without_touching_the_process(wandb_sandbox: Path) -> None:
    import os

    logger = CollaborativeWandbLogger(save_dir=wandb_sandbox, offline=True)
    assert logger.requested_mode == "offline"
    assert logger.experiment.settings.mode in ("offline", "dryrun")
    assert "WANDB_MODE" not in os.environ
