#!/usr/bin/env python3
"""Writes synthetic per-minute request traces for checking autoscaling presets on shapes they were
not tuned on: bursty, stepped, saw-toothed and flash crowds, 8 days each (a week of history plus a
day), seeded so every run writes the same files.

Usage: python3 scripts/synthetic-traces.py OUT_DIR
"""
import math
import os
import random
import sys

MINUTES = 8 * 24 * 60


def diurnal(m):
    """A day/night cycle between 0.3 and 1.0, busier on weekdays."""
    day = 0.65 - 0.35 * math.cos(2 * math.pi * (m % 1440) / 1440)
    weekday = 1.0 if (m // 1440) % 7 < 5 else 0.7
    return day * weekday


def bursty(rng):
    # Poisson-like noise plus bursts of 2-5x lasting 1-10 minutes, about 6 an hour.
    out, burst_left, burst = [], 0, 1.0
    for m in range(MINUTES):
        if burst_left == 0 and rng.random() < 0.1:
            burst_left, burst = rng.randint(1, 10), rng.uniform(2.0, 5.0)
        factor = burst if burst_left > 0 else 1.0
        burst_left = max(0, burst_left - 1)
        out.append(1000 * diurnal(m) * factor * rng.lognormvariate(0, 0.15))
    return out


def stepped(rng):
    # Plateaus of 20-120 minutes at levels drawn anew each time: sudden steps up and down.
    out, level, left = [], 1000.0, 0
    for _ in range(MINUTES):
        if left == 0:
            level, left = rng.uniform(200, 6000), rng.randint(20, 120)
        left -= 1
        out.append(level * rng.lognormvariate(0, 0.05))
    return out


def sawtooth(rng):
    # Linear climbs over 30-90 minutes from a trough to a peak, then a drop within a minute.
    out, period, pos = [], 60, 0
    for m in range(MINUTES):
        if pos == period:
            period, pos = rng.randint(30, 90), 0
        out.append((300 + 5000 * pos / period) * diurnal(m) * rng.lognormvariate(0, 0.05))
        pos += 1
    return out


def flash_crowds(rng):
    # A quiet diurnal base with one or two flash crowds a day: a 5-minute ramp to 10-20x,
    # 20-60 minutes at the top, a 15-minute decay.
    out = [300 * diurnal(m) * rng.lognormvariate(0, 0.1) for m in range(MINUTES)]
    for day in range(8):
        for _ in range(rng.randint(1, 2)):
            start = day * 1440 + rng.randint(0, 1400)
            top, hold = rng.uniform(10, 20), rng.randint(20, 60)
            shape = [1 + (top - 1) * i / 5 for i in range(5)] + [top] * hold
            shape += [top - (top - 1) * i / 15 for i in range(15)]
            for i, f in enumerate(shape):
                if start + i < MINUTES:
                    out[start + i] *= f
    return out


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for seed, (name, gen) in enumerate(
        [("bursty", bursty), ("stepped", stepped), ("sawtooth", sawtooth), ("flash-crowds", flash_crowds)]
    ):
        rng = random.Random(seed)
        with open(os.path.join(out_dir, f"synthetic-{name}.csv"), "w") as f:
            f.write("minute_offset,requests\n")
            for m, v in enumerate(gen(rng)):
                f.write(f"{m},{round(v * 60)}\n")


if __name__ == "__main__":
    main()
