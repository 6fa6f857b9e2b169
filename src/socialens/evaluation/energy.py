"""Energy and CO2 of a piece of work, measured with codecarbon in offline mode (no network).

codecarbon reads hardware power counters where the machine exposes them (Intel RAPL, NVIDIA NVML,
Apple powermetrics); where it cannot (most containers and cloud VMs), it estimates CPU power from
the CPU model's TDP scaled by the measured CPU load of this process, and RAM power from its size.
The ``method`` field says which one a figure came from, so a report never passes an estimate off
as a meter reading. CO2 is energy x the grid carbon intensity of ``country`` (ISO 3166 alpha-3),
from codecarbon's bundled tables.

A meter that cannot run (codecarbon missing or failing) never fails the work it wraps: its
reading is ``None`` with the reason in ``error``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_COUNTRY = "USA"


@dataclass
class EnergyReading:
    energy_kwh: float
    co2_kg: float
    cpu_kwh: float
    ram_kwh: float
    gpu_kwh: float
    duration_s: float
    method: str
    country: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _method(tracker) -> str:
    parts = []
    for device in getattr(tracker, "_hardware", []):
        kind = type(device).__name__
        if kind == "CPU":
            mode = getattr(device, "_mode", "?")
            if mode in ("cpu_load", "constant"):
                parts.append(f"CPU estimated from TDP {getattr(device, '_tdp', '?')} W x load ({mode})")
            else:
                parts.append(f"CPU measured ({mode})")
        elif kind == "GPU":
            parts.append("GPU measured (NVML)")
        elif kind == "RAM":
            parts.append("RAM estimated from size")
        elif kind == "AppleSiliconChip":
            parts.append("Apple chip measured (powermetrics)")
    return "; ".join(parts) or "unknown"


@functools.cache  # codecarbon reads its energy-mix table from disk; every meter would re-read it
def known_countries() -> frozenset[str] | None:
    """ISO 3166 alpha-3 codes codecarbon has a grid carbon intensity for (None without codecarbon)."""
    try:
        from codecarbon.input import DataSource
    except ImportError:
        return None
    return frozenset(DataSource().get_global_energy_mix_data())


class EnergyMeter:
    """``with EnergyMeter() as meter: ...`` then ``meter.reading`` (None if it could not measure)."""

    def __init__(self, country: str = DEFAULT_COUNTRY, enabled: bool = True, measure_power_secs: float = 1.0):
        self.country = country
        self.enabled = enabled
        self.measure_power_secs = measure_power_secs
        self.reading: EnergyReading | None = None
        self.error: str | None = None
        self._tracker = None

    def __enter__(self) -> EnergyMeter:
        if not self.enabled:
            self.error = "energy measurement disabled"
            return self
        try:
            from codecarbon import OfflineEmissionsTracker

            # codecarbon logs at INFO on its own logger before log_level applies; keep the terminal clean.
            logging.getLogger("codecarbon").setLevel(logging.ERROR)

            known = known_countries()
            if known is not None and self.country not in known:
                # codecarbon would fall back to a world average silently; a wrong figure is worse than none
                self.error = f"no grid carbon intensity for country '{self.country}'"
                return self
            self._tracker = OfflineEmissionsTracker(
                country_iso_code=self.country,
                output_methods=[],  # nothing written anywhere: the reading goes into metrics.json
                log_level="error",
                measure_power_secs=self.measure_power_secs,
                tracking_mode="process",
                allow_multiple_runs=True,
            )
            self._tracker.start()
        except Exception as exc:  # an energy meter never breaks the run it measures
            self._tracker = None
            self.error = f"codecarbon could not start: {type(exc).__name__}: {exc}"
        return self

    def __exit__(self, *exc_info) -> None:
        if self._tracker is None:
            return
        try:
            self._tracker.stop()
            data = self._tracker.final_emissions_data
            self.reading = EnergyReading(
                energy_kwh=float(data.energy_consumed),
                co2_kg=float(data.emissions),
                cpu_kwh=float(data.cpu_energy),
                ram_kwh=float(data.ram_energy),
                gpu_kwh=float(data.gpu_energy),
                duration_s=float(data.duration),
                method=_method(self._tracker),
                country=self.country,
            )
        except Exception as exc:
            self.error = f"codecarbon could not measure: {type(exc).__name__}: {exc}"
        finally:
            self._tracker = None
