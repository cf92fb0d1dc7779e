"""How long `rtcfleet plan` takes for a fleet of 1, 2, 3 and 5 AWS regions.

Run: ``.venv/bin/python -m benchmarks.plan_regions [--repeat N]``. Each fleet is planned from
scratch (home region first, the others reading its outputs), several times, in one process;
the first plan in a process also pays for importing pulumi_aws and is reported apart.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws\..*")

from infra.plan.runner import Planner, StackConfigs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "plan_regions.json"
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-1", "us-west-2", "eu-central-1")


def fleet(size: int) -> dict[str, dict[str, Any]]:
    """Production-shaped settings for the first ``size`` regions, each peered with the others."""
    regions = REGIONS[:size]
    cidrs = {region: f"10.{10 + i}.0.0/16" for i, region in enumerate(regions)}
    configs = {}
    for region in regions:
        configs[f"prod-aws-{region}"] = {
            "rtcfleet:homeRegion": REGIONS[0],
            "rtcfleet:availabilityZones": [region + z for z in "abc"],
            "rtcfleet:vpcCidr": cidrs[region],
            "rtcfleet:peeredCidrs": [c for r, c in cidrs.items() if r != region],
            "rtcfleet:adminAllowList": ["198.51.100.0/26"],
            "rtcfleet:certificate": f"arn:aws:acm:{region}:111122223333:certificate/bench-1",
            "rtcfleet:imageId": "ami-0f1e2d3c4b5a69788",
            "rtcfleet:gatewayCount": 3,
            "rtcfleet:mediaMin": 3,
            "rtcfleet:mediaMax": 40,
            "rtcfleet:redisReplicas": 2,
        }
    return configs


def plan_fleet(size: int) -> tuple[float, int, bool]:
    configs = fleet(size)
    planner = Planner(StackConfigs(configs))
    started = time.perf_counter()
    plans = [planner.plan(stack) for stack in configs]
    elapsed = time.perf_counter() - started
    return elapsed, sum(len(p.resources) for p in plans), all(p.passed for p in plans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3, 5])
    args = parser.parse_args()

    started = time.perf_counter()
    plan_fleet(1)
    cold = time.perf_counter() - started

    rows = []
    for size in args.sizes:
        runs = [plan_fleet(size) for _ in range(args.repeat)]
        times = [t for t, _, _ in runs]
        rows.append(
            {
                "regions": size,
                "resources": runs[0][1],
                "passed": all(p for _, _, p in runs),
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "per_region_s": statistics.median(times) / size,
            }
        )
    base = rows[0]["median_s"]
    print(f"cold first plan (imports pulumi_aws): {cold:.2f} s")
    print(f"{'regions':>7} {'resources':>9} {'median s':>9} {'per region':>10} {'x 1 region':>10}")
    for row in rows:
        row["ratio_to_one_region"] = row["median_s"] / base
        print(
            f"{row['regions']:>7} {row['resources']:>9} {row['median_s']:>9.3f} "
            f"{row['per_region_s']:>10.3f} {row['ratio_to_one_region']:>10.2f}"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        slope = (last["median_s"] - first["median_s"]) / (last["regions"] - first["regions"])
        print(f"marginal cost per added region: {slope:.3f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"cold_first_plan_s": cold, "repeat": args.repeat, "fleets": rows}, indent=2)
        + "\n"
    )
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
