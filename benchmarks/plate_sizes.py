"""Read rendered plates of growing size, with and without the second detection of large plates.

The plates are the rendered cases of `tests/plates/test_rendered_plates.py` (31 provinces and 13 plate
types on one row, 24 double-row plates), each in the middle of an 800x600 car-front scene, at several
sizes in pixels per millimetre. For each size both sides run on the same scene, one after the other:
"single pass" turns the second detection off (detector.LARGE_PLATE_SHARE set to infinity), "second
detection" is the plate stage as shipped. The script prints, per layout and size, the plates read
exactly and the wrong reads that passed the grammar check, which the daemon would publish.

    EDGE_MODEL_DIR=../shared/assets/models .venv/bin/python benchmarks/plate_sizes.py [--sizes 0.5 0.8 1.0] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.core.regions import Region  # noqa: E402
from edge.plates import detector  # noqa: E402
from tests.plates import test_rendered_plates as rendered  # noqa: E402
from tests.support import render_plate  # noqa: E402

LAYOUTS = {"single_row": rendered.PROVINCE_CASES + rendered.TYPE_CASES, "double_row": rendered.DOUBLE_ROW_CASES}
SIDES = {"single pass": math.inf, "second detection": detector.LARGE_PLATE_SHARE}


def read_all(stage, cases, px_per_mm: float) -> dict[str, dict]:
    """Return, per side, the count of exact reads and the list of wrong valid reads."""
    counts = {side: {"exact": 0, "wrong": []} for side in SIDES}
    for case in cases:
        scene = rendered.render_scene(case, "clean", px_per_mm)
        for side, share in SIDES.items():
            detector.LARGE_PLATE_SHARE = share
            results = stage.read([Region.whole_frame(scene)])
            counts[side]["exact"] += any(result.valid and result.text == case.text for result in results)
            counts[side]["wrong"] += [f"{case.text}->{result.text}" for result in results
                                      if result.valid and result.text != case.text]
    detector.LARGE_PLATE_SHARE = SIDES["second detection"]
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 0.7, 0.8, 1.0, 1.2],
                        help="plate sizes in pixels per millimetre (a plate is 440 mm wide and the scene 800 px)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    if not render_plate.font_available():
        print(f"error: {render_plate.FONT_MISSING_REASON}", file=sys.stderr)
        return 2
    bad = [size for size in args.sizes if not 0.05 <= size <= 1.7]  # NaN fails every comparison too
    if bad:
        print(f"error: sizes {bad} are outside 0.05 to 1.7 px/mm: smaller plates have no pixels to read, and "
              "larger ones do not fit the 800 px scene", file=sys.stderr)
        return 2

    stage = rendered.build_stage()
    rows = []
    for layout, cases in LAYOUTS.items():
        for size in args.sizes:
            counts = read_all(stage, cases, size)
            rows.append({"layout": layout, "px_per_mm": size, "plates": len(cases), "share_of_width":
                         round(size * 440 / rendered.SCENE_SIZE[0], 2), **counts})
            if not args.json:
                print(f"{layout:10} {size:<4g} px/mm, plate {rows[-1]['share_of_width']:.0%} of the width: "
                      + "   ".join(f"{side} {counts[side]['exact']}/{len(cases)} exact, "
                                   f"{len(counts[side]['wrong'])} wrong" for side in SIDES), flush=True)
    if args.json:
        print(json.dumps({"rows": rows}, ensure_ascii=False))
    else:
        for row in rows:
            for side in SIDES:
                if row[side]["wrong"]:
                    print(f"wrong reads, {row['layout']} {row['px_per_mm']} px/mm, {side}: "
                          f"{', '.join(row[side]['wrong'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
