import time

import pytest

from socialens.evaluation.energy import EnergyMeter


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def test_busy_work_uses_more_energy_than_idle_time_and_says_how_it_was_measured():
    with EnergyMeter(country="USA") as busy:
        _busy(1.0)
    with EnergyMeter(country="USA") as idle:
        time.sleep(1.0)
    assert busy.error is None and busy.reading is not None, busy.error
    reading = busy.reading
    assert reading.energy_kwh > 0
    assert reading.energy_kwh == pytest.approx(reading.cpu_kwh + reading.ram_kwh + reading.gpu_kwh, rel=1e-6)
    assert reading.cpu_kwh > idle.reading.cpu_kwh
    assert reading.duration_s >= 1.0
    assert "CPU" in reading.method and reading.country == "USA"


def test_co2_follows_the_grid_of_the_configured_country():
    intensity = {}
    for country in ("FRA", "POL"):
        with EnergyMeter(country=country) as meter:
            _busy(0.5)
        intensity[country] = meter.reading.co2_kg / meter.reading.energy_kwh
    # France's grid is mostly nuclear, Poland's mostly coal: kg CO2 per kWh differs several-fold.
    assert intensity["POL"] > 3 * intensity["FRA"]


def test_disabled_or_broken_meter_never_breaks_the_work():
    with EnergyMeter(enabled=False) as meter:
        _busy(0.01)
    assert meter.reading is None and "disabled" in meter.error
    with EnergyMeter(country="XXX") as meter:  # codecarbon would silently use a world average
        _busy(0.01)
    assert meter.reading is None and "no grid carbon intensity for country 'XXX'" in meter.error
