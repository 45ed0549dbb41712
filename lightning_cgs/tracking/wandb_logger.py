"""``CollaborativeWandbLogger``: Lightning's ``WandbLogger`` that falls back to offline instead of failing.

W&B must never stop or slow a collaboration: without an API key, without a network, or when W&B itself fails, the
run is saved offline (for a later ``wandb sync``) or, as a last resort, not logged at all, and the logger says so
once.
"""

from __future__ import annotations

import netrc
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from lightning.fabric.loggers.logger import _DummyExperiment, rank_zero_experiment
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from typing_extensions import override

WandbMode = Literal["auto", "online", "offline", "disabled"]
DEFAULT_BASE_URL = "https://api.wandb.ai"
_MODES = ("auto", "online", "offline", "disabled")


class CollaborativeWandbLogger(WandbLogger):
    """Log to Weights & Biases through Lightning's ``WandbLogger``, online when possible and offline otherwise.

    The mode is decided when the run starts (the first use of :attr:`experiment`):

    - ``"auto"`` (default): offline when ``WANDB_MODE`` or ``wandb offline`` says so, when no API key is found
      (``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE``, the ``.netrc`` entry that ``wandb login`` writes) or when the
      W&B server (``WANDB_BASE_URL``, default ``https://api.wandb.ai``) cannot be reached within
      ``network_timeout`` seconds; online otherwise.
    - ``"online"``: as ``"auto"`` but ignores ``WANDB_MODE``; still falls back to offline without a key or network.
    - ``"offline"``: the run is written under ``save_dir/wandb/offline-run-*`` for a later ``wandb sync``.
    - ``"disabled"``: nothing is logged.

    If starting the run fails (an invalid key, a server error), the logger retries offline; if that fails too, W&B
    is disabled for the run. An error while logging disables W&B for the rest of the run. Each fallback is reported
    once with ``rank_zero_warn``; training always goes on.

    Unlike ``WandbLogger(offline=True)``, which sets ``WANDB_MODE`` for the whole process, the mode is passed to
    ``wandb.init`` for this run only. Like Lightning's logger, the run is not finished when training ends (so a
    following ``trainer.test`` logs to the same run); call ``wandb.finish()`` in a notebook or a loop of runs.

    Args:
        name: display name of the run.
        save_dir: folder under which W&B writes the run (``<save_dir>/wandb/...``).
        version: run id, to resume a run.
        project: W&B project.
        mode: ``"auto"``, ``"online"``, ``"offline"`` or ``"disabled"``.
        offline: ``True`` is ``mode="offline"`` (the argument of Lightning's ``WandbLogger``).
        log_model: upload checkpoints as artifacts (``True``, ``"all"`` or ``False``).
        network_timeout: seconds that the reachability check of the W&B server may take (> 0).
        \\**kwargs: passed to Lightning's ``WandbLogger`` and on to ``wandb.init`` (``entity``, ``group``, ``tags``,
            ``notes``, ``config``, ...).

    Example:
        >>> CollaborativeWandbLogger(project="fairness", mode="offline")
        CollaborativeWandbLogger(project='fairness', mode='offline')
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | Path = ".",
        version: str | None = None,
        project: str = "lightning-cgs",
        mode: WandbMode = "auto",
        offline: bool = False,
        log_model: Literal["all"] | bool = False,
        network_timeout: float = 2.0,
        **kwargs: Any,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"Expected argument `mode` to be one of {list(_MODES)}, but got {mode!r}.")
        if isinstance(network_timeout, bool) or not isinstance(network_timeout, (int, float)) or network_timeout <= 0:
            raise ValueError(f"Expected argument `network_timeout` to be a number > 0, but got {network_timeout!r}.")
        # `offline=False` keeps Lightning from setting WANDB_MODE for the whole process; the mode goes to wandb.init.
        super().__init__(
            name=name, save_dir=save_dir, version=version, project=project, offline=False, log_model=log_model, **kwargs
        )
        # Lightning 2.6 always hands wandb.init `anonymous` (None unless asked for), and wandb 0.31 warns that the
        # setting has no effect whenever it is present: leave it out unless the user set it. Drop once Lightning does.
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        self.requested_mode: WandbMode = "offline" if offline else mode
        self.network_timeout = float(network_timeout)
        self.mode: str | None = None
        self.fallback_reason: str | None = None
        self._disabled_by_error = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(project={self._project!r}, mode={self.requested_mode!r})"

    # ------------------------------------------------------------------------------------------------ the run
    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The W&B run (started on first use, with the fallbacks above); a no-op object on ranks other than zero."""
        if self._experiment is None:
            self._experiment = self._start_run()
        return self._experiment

    def _start_run(self) -> Any:
        if self.save_dir:  # wandb looks for a git repository there, and warns when the folder does not exist yet
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
        mode, reason = resolve_wandb_mode(self.requested_mode, self.network_timeout)
        attempts = [mode] + (["offline"] if mode == "online" else []) + ([] if mode == "disabled" else ["disabled"])
        failures = []
        for attempt in attempts:
            self._wandb_init["mode"] = attempt
            try:
                run = WandbLogger.experiment.fget(self)  # Lightning's start: reuse of a live run, x-axis definition
            except Exception as error:  # noqa: BLE001 - any W&B failure must leave training running
                self._experiment = None
                failures.append(f"the {attempt} start failed ({type(error).__name__}: {_first_line(error)})")
                continue
            self.mode = _run_mode(run, attempt)
            self.fallback_reason = "; ".join(([reason] if reason else []) + failures) or None
            self._announce(run)
            return run
        self.mode = "disabled"
        self.fallback_reason = "; ".join(([reason] if reason else []) + failures)
        rank_zero_warn(f"W&B is disabled for this run: {self.fallback_reason}. Training goes on without W&B.")
        return _DummyExperiment()

    def _announce(self, run: Any) -> None:
        sync_dir = _sync_dir(run)
        if self.mode == "offline":
            where = f"The run is saved in `{sync_dir}`: upload it later with `wandb sync {sync_dir}`."
            if self.fallback_reason:
                rank_zero_warn(f"W&B logs offline: {self.fallback_reason}. {where}")
            else:
                rank_zero_info(f"W&B logs offline. {where}")
        elif self.mode == "disabled" and self.fallback_reason:
            rank_zero_warn(f"W&B is disabled for this run: {self.fallback_reason}. Training goes on without W&B.")
        elif self.fallback_reason:
            rank_zero_warn(f"W&B: {self.fallback_reason}; the run logs {self.mode}.")

    @property
    @override
    def version(self) -> str | None:
        """The run id (``None`` until the run starts, unless ``version`` was given; and when W&B is disabled)."""
        if isinstance(self._experiment, _DummyExperiment):
            return self._id
        return super().version

    @property
    def failed(self) -> bool:
        """Whether an error while logging has disabled W&B for the rest of the run."""
        return self._disabled_by_error

    def disable_after_error(self, what: str, error: BaseException) -> None:
        """Stop logging to W&B for the rest of the run after ``error`` while ``what``; say so once."""
        if not self._disabled_by_error:
            rank_zero_warn(
                f"W&B failed while {what} ({type(error).__name__}: {_first_line(error)}); nothing more is sent to W&B "
                "in this run. Training goes on."
            )
        self._disabled_by_error = True

    # -------------------------------------------------------------------------------- logging that cannot fail
    @override
    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        if self._disabled_by_error:
            return
        try:
            super().log_hyperparams(params)
        except Exception as error:  # noqa: BLE001
            self.disable_after_error("logging the hyperparameters", error)

    @override
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self._disabled_by_error:
            return
        try:
            super().log_metrics(metrics, step)
        except Exception as error:  # noqa: BLE001
            self.disable_after_error("logging metrics", error)

    @override
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._disabled_by_error or self.mode == "disabled":
            return
        try:
            super().after_save_checkpoint(checkpoint_callback)
        except Exception as error:  # noqa: BLE001
            self.disable_after_error("uploading a checkpoint", error)

    @override
    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._disabled_by_error or self.mode == "disabled":
            return
        try:
            super().finalize(status)
        except Exception as error:  # noqa: BLE001
            self.disable_after_error("uploading the checkpoints", error)


@dataclass
class WandbOptions:
    """The ``wandb:`` section of ``lightning-cgs``: also log the run to W&B, next to the config's own logger.

    Args:
        enabled: log to W&B (``--wandb.enabled true``).
        project: W&B project.
        name: display name of the run (W&B picks one when empty).
        entity: W&B team or user (your default entity when empty).
        group: W&B group, to compare runs of a sweep.
        tags: W&B tags.
        notes: a description of the run.
        mode: ``auto`` (online with a key and a network, offline otherwise), ``online``, ``offline`` or ``disabled``.
        save_dir: folder of the W&B files (``<save_dir>/wandb/...``); empty: the ``save_dir`` of the config's logger.
        log_model: upload checkpoints as W&B artifacts.
        network_timeout: seconds the check that the W&B server can be reached may take.
    """

    enabled: bool = False
    project: str = "lightning-cgs"
    name: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    mode: WandbMode = "auto"
    save_dir: str | None = None
    log_model: bool = False
    network_timeout: float = 2.0

    def build_logger(self, default_save_dir: str | Path = ".") -> CollaborativeWandbLogger:
        """The logger these options describe; ``default_save_dir`` applies when ``save_dir`` is empty."""
        extra = {key: value for key, value in (("entity", self.entity), ("group", self.group)) if value}
        if self.tags:
            extra["tags"] = list(self.tags)
        if self.notes:
            extra["notes"] = self.notes
        return CollaborativeWandbLogger(
            name=self.name,
            save_dir=self.save_dir or default_save_dir,
            project=self.project,
            mode=self.mode,
            log_model=self.log_model,
            network_timeout=self.network_timeout,
            **extra,
        )


# ---------------------------------------------------------------------------------------- mode resolution
def resolve_wandb_mode(requested: WandbMode = "auto", network_timeout: float = 2.0) -> tuple[str, str | None]:
    """The mode a run can use, and why it differs from the requested one (``None`` if it does not).

    See :class:`CollaborativeWandbLogger` for the rules. Never raises; needs no network when the answer is offline.

    Example:
        >>> resolve_wandb_mode("offline")
        ('offline', None)
    """
    if requested in ("offline", "disabled"):
        return requested, None
    if requested == "auto":
        configured = _configured_mode()
        if configured in ("offline", "dryrun"):
            return "offline", None
        if configured == "disabled":
            return "disabled", None
    base_url = _base_url()
    if not has_wandb_credentials(base_url):
        return "offline", "no W&B API key was found (set WANDB_API_KEY or run `wandb login`)"
    if not server_reachable(base_url, network_timeout):
        return "offline", f"the W&B server {base_url} cannot be reached (checked for {network_timeout:g} s)"
    return "online", None


def has_wandb_credentials(base_url: str = DEFAULT_BASE_URL) -> bool:
    """Whether W&B credentials exist for ``base_url``: the environment, the ``.netrc`` file, or this session."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(base_url).netloc
    for path in _netrc_paths():
        try:
            entry = netrc.netrc(path).authenticators(host)
        except (OSError, netrc.NetrcParseError):
            continue
        if entry and entry[2]:
            return True
    try:  # credentials given to `wandb.login(key=...)` in this process
        from wandb.sdk.lib import wbauth

        return wbauth.session_credentials(host=base_url) is not None
    except Exception:  # noqa: BLE001 - a private API of wandb; absent means no session key
        return False


def server_reachable(base_url: str = DEFAULT_BASE_URL, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the W&B server opens within ``timeout`` seconds (name lookup included)."""
    parts = urlsplit(base_url)
    host = parts.hostname
    if not host:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, name="wandb-reachability", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _configured_mode() -> str | None:
    """The mode set by ``WANDB_MODE`` or ``wandb offline``/``wandb disabled`` (W&B's settings files)."""
    try:
        from wandb.sdk import wandb_setup

        return str(wandb_setup.singleton().settings.mode)
    except Exception:  # noqa: BLE001
        return os.environ.get("WANDB_MODE")


def _base_url() -> str:
    try:
        from wandb.sdk import wandb_setup

        return str(wandb_setup.singleton().settings.base_url or DEFAULT_BASE_URL)
    except Exception:  # noqa: BLE001
        return os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)


def _netrc_paths() -> list[Path]:
    if os.environ.get("NETRC"):
        return [Path(os.environ["NETRC"]).expanduser()]
    return [path for path in (Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()) if path.is_file()]


def _run_mode(run: Any, attempt: str) -> str:
    mode = getattr(getattr(run, "settings", None), "mode", None) or attempt
    return "offline" if mode == "dryrun" else str(mode)


def _sync_dir(run: Any) -> str:
    settings = getattr(run, "settings", None)
    return str(getattr(settings, "sync_dir", None) or getattr(run, "dir", ""))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
