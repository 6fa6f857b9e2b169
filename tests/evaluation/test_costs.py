import pytest

from socialens.core.types import PredictionRecord, Status
from socialens.evaluation.costs import DEFAULT_HARDWARE_PRICE_PER_HOUR, aggregate_costs, cell_costs


def _records(latencies, cost=0.0, tokens=(0, 0)):
    return [
        PredictionRecord(
            id=str(i),
            gold="a",
            predicted="a",
            latency_s=lat,
            cost=cost,
            tokens_in=tokens[0],
            tokens_out=tokens[1],
        )
        for i, lat in enumerate(latencies)
    ]


def test_local_model_priced_by_hardware_time():
    records = _records([0.001, 0.002, 0.003, 0.010])
    out = cell_costs(records, {"predict_time_s": 0.36, "train_time_s": 36.0, "n_test": 4})
    assert out["pricing"] == "hardware"
    assert out["hardware_price_per_hour"] == DEFAULT_HARDWARE_PRICE_PER_HOUR == 0.10
    # 0.10 USD/h * 0.36 s = 1e-5 USD for 4 examples -> 0.0025 USD per 1,000
    assert out["inference_cost"] == pytest.approx(1e-5)
    assert out["cost_per_1000"] == pytest.approx(0.0025)
    assert out["train_cost"] == pytest.approx(0.001)
    assert out["latency_p50_s"] == pytest.approx(0.0025)
    assert out["latency_mean_s"] == pytest.approx(0.004)
    assert out["latency_p95_s"] == pytest.approx(0.00895)
    assert out["throughput_per_s"] == pytest.approx(4 / 0.36)
    assert out["predict_energy_kwh"] is None and out["energy_wh_per_1000"] is None


def test_measured_energy_is_scaled_to_1000_classifications():
    costs = {
        "predict_time_s": 1.0,
        "predict_energy_kwh": 2e-6,
        "predict_co2_kg": 1e-6,
        "train_energy_kwh": 5e-5,
        "energy_method": "CPU estimated from TDP 8 W x load (cpu_load)",
        "energy_country": "FRA",
    }
    out = cell_costs(_records([0.25] * 4), costs)
    # 2e-6 kWh = 2e-3 Wh for 4 examples -> 0.5 Wh per 1,000; 1e-6 kg = 1e-3 g -> 0.25 g per 1,000
    assert out["energy_wh_per_1000"] == pytest.approx(0.5)
    assert out["co2_g_per_1000"] == pytest.approx(0.25)
    assert out["train_energy_kwh"] == 5e-5
    assert out["energy_method"].startswith("CPU estimated") and out["energy_country"] == "FRA"
    other = cell_costs(_records([0.25] * 4), {**costs, "predict_energy_kwh": 4e-6})
    agg = aggregate_costs([out, other])
    assert agg["energy_wh_per_1000"] == pytest.approx(0.75)
    assert agg["energy_country"] == "FRA"


def test_custom_hardware_price():
    out = cell_costs(_records([0.1] * 10), {"predict_time_s": 3.6}, hardware_price_per_hour=2.0)
    assert out["cost_per_1000"] == pytest.approx(2.0 / 3600 * 3.6 / 10 * 1000)


def test_api_model_priced_from_records():
    records = _records([0.5, 1.0, 1.5, 2.0], cost=0.002, tokens=(100, 3))
    out = cell_costs(records, {"predict_time_s": 5.0, "train_time_s": 0.0})
    assert out["pricing"] == "api"
    assert out["cost_per_1000"] == pytest.approx(2.0)
    assert out["latency_p50_s"] == pytest.approx(1.25)
    assert out["tokens_in"] == 400 and out["tokens_out"] == 12
    assert out["tokens_in_per_1000"] == pytest.approx(100_000)
    assert out["train_cost"] == 0.0


def test_missing_costs_block_falls_back_to_latency_sum():
    out = cell_costs(_records([1.0, 2.0, 3.0]), None)
    assert out["predict_time_s"] == pytest.approx(6.0)
    assert out["train_time_s"] is None and out["train_cost"] is None
    assert out["cost_per_1000"] == pytest.approx(0.10 / 3600 * 6.0 / 3 * 1000)


def test_non_ok_records_still_count():
    records = _records([1.0, 1.0])
    records[1].status, records[1].predicted = Status.REFUSED, None
    assert cell_costs(records, {"predict_time_s": 2.0})["n"] == 2


def test_aggregate_over_seeds_and_validation():
    a = cell_costs(_records([1.0]), {"predict_time_s": 1.0, "train_time_s": 1.0})
    b = cell_costs(_records([3.0]), {"predict_time_s": 3.0, "train_time_s": None})
    agg = aggregate_costs([a, b])
    assert agg["n_seeds"] == 2
    assert agg["latency_p50_s"] == pytest.approx(2.0)
    assert agg["train_time_s"] == pytest.approx(1.0)  # None skipped
    with pytest.raises(ValueError):
        aggregate_costs([])
    with pytest.raises(ValueError):
        cell_costs(_records([1.0]), pricing="free")
