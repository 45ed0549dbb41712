"""The printed fairness report says why a measure is missing: not measured, or undefined."""

from __future__ import annotations

import pytest

from lightning_cgs.report import SUMMARY_KEYS, FairnessReport


def make_report(standalone: list | None, reputation: list | None, final: list[float]) -> FairnessReport:
    agents = [
        {
            "agent": i,
            "shard_size": 10 * (i + 1),
            "standalone_accuracy": None if standalone is None else standalone[i],
            "final_accuracy": final[i],
            "reputation": None if reputation is None else reputation[i],
            "reward_fraction": None,
        }
        for i in range(len(final))
    ]
    summary = dict.fromkeys(SUMMARY_KEYS)
    summary["best_accuracy"] = max(final)
    return FairnessReport(agents=agents, summary=summary, rounds=3)


def summary_lines(report: FairnessReport) -> dict[str, str]:
    lines = report.format().splitlines()
    return dict(line.split(": ", 1) for line in lines[lines.index("rounds: 3") + 1 :])


@pytest.mark.parametrize(
    ("standalone", "reputation", "expected"),
    [
        (
            None,
            None,
            {
                "rho_standalone": "n/a (no standalone accuracies: standalone_baseline=False)",
                "individual_rationality": "n/a (no standalone accuracies: standalone_baseline=False)",
                "rho_cgsv": "n/a (no reputations: CosineGradientShapley was not in the callbacks)",
                "rho_cgsv_mean": "n/a (no reputations: CosineGradientShapley was not in the callbacks)",
            },
        ),
        (
            [0.5, 0.6, 0.7],
            [0.2, 0.3, 0.5],
            {  # both measured, both None: the final accuracies are all equal
                "rho_standalone": "undefined (a constant vector has no correlation)",
                "rho_cgsv": "undefined (a constant vector has no correlation)",
                "individual_rationality": "n/a",
            },
        ),
    ],
)
def test_missing_measures_say_why(standalone, reputation, expected: dict[str, str]) -> None:
    shown = summary_lines(make_report(standalone, reputation, final=[0.9, 0.9, 0.9]))
    assert shown["best_accuracy"] == "0.9000"
    for key, text in expected.items():
        assert shown[key] == text, key
