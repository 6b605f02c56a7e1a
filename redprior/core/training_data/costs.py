"""What training pairs cost: one record per structure (cost.json of its folder) and their
sum per mode (seconds per pair), as 'training maps' logs and reports them. Plain Python."""
import json
import math
import os

COST_FILE = "cost.json"


def structure_cost(structure, source, mode, pairs, seconds, setup_seconds, resolutions, box,
                   pixel_size, **extra):
    """The cost record of one structure's pairs: counts, seconds (total, of the ground truth
    and reserved check = setup, per pair), the range of finite resolutions (None if none),
    box and pixel size, plus `extra` (mode-specific figures)."""
    res = [r for r in resolutions if math.isfinite(r)]
    return dict(id=structure, source=source, mode=mode, pairs=pairs,
                seconds=round(seconds, 3), setup_seconds=round(setup_seconds, 3),
                seconds_per_pair=round(seconds / pairs, 4) if pairs else None,
                resolution=[min(res), max(res)] if res else None, box=int(box),
                pixel_size=pixel_size, **extra)


def write_cost(folder, cost):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, COST_FILE), "w") as fh:
        json.dump(cost, fh, indent=1)


def read_cost(folder):
    """The cost record written in `folder`, or None."""
    path = os.path.join(folder, COST_FILE)
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    return None


def summarise_costs(costs, store):
    """Pairs, box and pixel size of the merged `store`, the structures' cost records, their
    sums per mode (pairs, seconds, seconds_per_pair) and the ids of skipped structures."""
    modes = {}
    for c in costs:
        if not c.get("pairs"):
            continue
        m = modes.setdefault(c["mode"], dict(pairs=0, seconds=0.0))
        m["pairs"] += c["pairs"]
        m["seconds"] += c["seconds"]
    for m in modes.values():
        m["seconds_per_pair"] = m["seconds"] / m["pairs"]
    return dict(pairs=len(store), box=store.box, pixel_size=store.pixel_size,
                structures=costs, modes=modes,
                skipped=[c["id"] for c in costs if c.get("skipped")])
