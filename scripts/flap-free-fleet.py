#!/usr/bin/env python3
"""What a clairvoyant fleet that never flaps can reach, for docs/autoscaling.md.

The fleet is held constant over blocks of 300 s (the flap interval: two changes of a block fleet
are never closer than that, so it never flaps) and, knowing each block's load in advance, is set
per block to the pods that minimise `replica-hours + price * overload minutes`. It replays the
trace exactly as `simulate` does (15 s ticks, the load moving linearly between a trace's minutes,
a pod serving 300 req/s at 100 % CPU and 80 % of that within the SLO, 2..=20 pods, a pod serving
the moment it is asked for, as the oracle's do) and prints one row per price.

It is not a lower bound for every policy that never flaps (a fleet may also change between block
edges); it shows that a flap limit alone does not rule a replica-hour goal out: what stands
between a policy and these rows is not knowing the load ahead.

    python3 scripts/flap-free-fleet.py TRACE.csv [--start-minute N] [--minutes N]
"""
import argparse
import csv

TICK, BLOCK = 15, 300
SLO_RPS, MIN_PODS, MAX_PODS = 300.0 * 0.8, 2, 20
PRICES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def ticks(path, start, minutes, peak_rps):
    with open(path, newline="") as f:
        rows = [float(r[-1]) for r in list(csv.reader(f))[1:] if r]
    rows = rows[start:start + minutes] if minutes else rows[start:]
    peak = max(rows)
    rps = [r / peak * peak_rps for r in rows]
    per_row = 60 // TICK
    return [a + (b - a) * k / per_row for a, b in zip(rps, rps[1:] + rps[-1:]) for k in range(per_row)]


def bound(loads, price):
    """(overload minutes, replica-hours) of the cheapest block fleet at `price` RH per overload minute."""
    overload = hours = 0.0
    per_block = BLOCK // TICK
    for i in range(0, len(loads), per_block):
        block = loads[i:i + per_block]
        best = None
        for pods in range(MIN_PODS, MAX_PODS + 1):
            over = sum(1 for load in block if load > pods * SLO_RPS) * TICK / 60
            rh = pods * len(block) * TICK / 3600
            if best is None or rh + price * over < best[0]:
                best = (rh + price * over, over, rh)
        overload, hours = overload + best[1], hours + best[2]
    return overload, hours


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trace")
    p.add_argument("--start-minute", type=int, default=0)
    p.add_argument("--minutes", type=int)
    p.add_argument("--peak-rps", type=float, default=6000.0)
    a = p.parse_args()
    loads = ticks(a.trace, a.start_minute, a.minutes, a.peak_rps)
    print("| price (replica-hours per overload minute) | overload minutes | replica-hours |")
    print("|---:|---:|---:|")
    for price in PRICES:
        over, hours = bound(loads, price)
        print(f"| {price} | {over:.2f} | {hours:.1f} |")


if __name__ == "__main__":
    main()
