"""Cost figures of one model, computed from its prediction records and the ``costs`` block that
``bench`` writes into each cell's ``metrics.json`` (train_time_s, predict_time_s, n_test,
tokens_in/out, cost). Nothing here runs a model.

Money per 1,000 classifications:

* **API models** (any record carries a non-zero ``cost``, i.e. the backend was configured with
  prices): the sum of the records' costs / n x 1000.
* **Local models**: ``hardware_price_per_hour`` x predict time (hours) / n x 1000, i.e. what the
  machine that ran the predictions costs for the time they took.
  ``DEFAULT_HARDWARE_PRICE_PER_HOUR`` is 0.10 USD/h: roughly the on-demand price of a 2-vCPU,
  8 GB general-purpose cloud VM (2025 list prices of the big clouds range 0.07-0.10 USD/h), the
  kind of machine the defaults are built for. Pass your own price for a GPU box.
* Training cost is ``hardware_price_per_hour`` x train time for every model (zero-shot LLMs have
  a train time near zero).

Latency statistics are over the records' ``latency_s``; families that predict in batches record
the batch time divided by its size, so those are amortised latencies.

Energy and CO2 are measured by codecarbon around ``fit`` and ``predict`` in ``bench.run_cell``
(see ``evaluation/energy.py``; ``energy_method`` says whether a figure is a meter reading or a
TDP x load estimate). Here they are only carried over and scaled to 1,000 classifications.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from socialens.core.types import PredictionRecord

DEFAULT_HARDWARE_PRICE_PER_HOUR = 0.10  # USD per hour, a 2-vCPU cloud VM (see the module docstring)
CURRENCY = "USD"
# The numeric fields that aggregate_costs averages over seeds.
NUMERIC_FIELDS = [
    "n",
    "latency_mean_s",
    "latency_p50_s",
    "latency_p95_s",
    "throughput_per_s",
    "tokens_in",
    "tokens_out",
    "tokens_in_per_1000",
    "tokens_out_per_1000",
    "predict_time_s",
    "train_time_s",
    "inference_cost",
    "cost_per_1000",
    "train_cost",
    "train_energy_kwh",
    "train_co2_kg",
    "predict_energy_kwh",
    "predict_co2_kg",
    "energy_wh_per_1000",
    "co2_g_per_1000",
]


def cell_costs(
    records: Iterable[PredictionRecord],
    costs: dict[str, Any] | None = None,
    *,
    hardware_price_per_hour: float = DEFAULT_HARDWARE_PRICE_PER_HOUR,
    pricing: str | None = None,
) -> dict[str, Any]:
    """Cost figures of one cell (one model x dataset x seed) as a JSON-serialisable dict.

    ``costs`` is the cell's ``metrics.json["costs"]`` block (may be None or partial: the
    prediction time then falls back to the sum of the records' latencies). ``pricing`` forces
    ``"api"`` or ``"hardware"``; by default it is ``"api"`` when any record has a cost.

    Returns ``{"n", "pricing", "hardware_price_per_hour", "currency", "latency_mean_s",
    "latency_p50_s", "latency_p95_s", "throughput_per_s", "tokens_in", "tokens_out",
    "tokens_in_per_1000", "tokens_out_per_1000", "predict_time_s", "train_time_s",
    "inference_cost", "cost_per_1000", "train_cost"}`` plus the energy fields (kWh and kg CO2 of
    training and prediction, Wh and g CO2 per 1,000 classifications, method, country); a figure that cannot be
    computed (no records, no time) is None."""
    records = list(records)
    costs = costs or {}
    n = len(records) or int(costs.get("n_test") or 0)
    latencies = np.asarray([r.latency_s for r in records], dtype=np.float64)
    record_cost = float(sum(r.cost for r in records)) if records else float(costs.get("cost") or 0.0)
    tokens_in = int(sum(r.tokens_in for r in records)) if records else int(costs.get("tokens_in") or 0)
    tokens_out = int(sum(r.tokens_out for r in records)) if records else int(costs.get("tokens_out") or 0)
    if pricing is None:
        pricing = "api" if record_cost > 0 else "hardware"
    if pricing not in ("api", "hardware"):
        raise ValueError(f"pricing must be 'api' or 'hardware', got {pricing!r}")
    if hardware_price_per_hour < 0:
        raise ValueError(f"hardware_price_per_hour must be >= 0, got {hardware_price_per_hour}")

    predict_time = costs.get("predict_time_s")
    if predict_time is None and len(latencies):
        predict_time = float(latencies.sum())
    train_time = costs.get("train_time_s")
    per_second = hardware_price_per_hour / 3600.0

    if pricing == "api":
        inference_cost: float | None = record_cost
    else:
        inference_cost = per_second * predict_time if predict_time is not None else None
    result: dict[str, Any] = {
        "n": n,
        "pricing": pricing,
        "hardware_price_per_hour": hardware_price_per_hour,
        "currency": CURRENCY,
        "latency_mean_s": float(latencies.mean()) if len(latencies) else None,
        "latency_p50_s": float(np.percentile(latencies, 50)) if len(latencies) else None,
        "latency_p95_s": float(np.percentile(latencies, 95)) if len(latencies) else None,
        "throughput_per_s": (n / predict_time) if predict_time and n else None,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "tokens_in_per_1000": 1000 * tokens_in / n if n else None,
        "tokens_out_per_1000": 1000 * tokens_out / n if n else None,
        "predict_time_s": predict_time,
        "train_time_s": train_time,
        "inference_cost": inference_cost,
        "cost_per_1000": 1000 * inference_cost / n if inference_cost is not None and n else None,
        "train_cost": per_second * train_time if train_time is not None else None,
        **_energy(costs, n),
    }
    return result


def _energy(costs: dict[str, Any], n: int) -> dict[str, Any]:
    predict_kwh, predict_co2 = costs.get("predict_energy_kwh"), costs.get("predict_co2_kg")
    return {
        "train_energy_kwh": costs.get("train_energy_kwh"),
        "train_co2_kg": costs.get("train_co2_kg"),
        "predict_energy_kwh": predict_kwh,
        "predict_co2_kg": predict_co2,
        "energy_wh_per_1000": 1e6 * predict_kwh / n if predict_kwh is not None and n else None,
        "co2_g_per_1000": 1e6 * predict_co2 / n if predict_co2 is not None and n else None,
        "energy_method": costs.get("energy_method"),
        "energy_country": costs.get("energy_country"),
    }


def aggregate_costs(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every numeric field of several ``cell_costs`` dicts (None values are
    skipped; a field None in every seed stays None). ``pricing`` is the first cell's."""
    if not cells:
        raise ValueError("aggregate_costs needs at least one cost dict")
    result: dict[str, Any] = {
        "n_seeds": len(cells),
        "pricing": cells[0]["pricing"],
        "hardware_price_per_hour": cells[0]["hardware_price_per_hour"],
        "currency": cells[0].get("currency", CURRENCY),
        "energy_method": cells[0].get("energy_method"),
        "energy_country": cells[0].get("energy_country"),
    }
    for name in NUMERIC_FIELDS:
        values = [c.get(name) for c in cells if c.get(name) is not None]
        result[name] = float(np.mean(values)) if values else None
    return result
