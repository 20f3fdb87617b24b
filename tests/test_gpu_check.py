"""The GPU check the repository keeps (scripts/gpu_check.sh) and its throughput bench, run
here at a tiny scale on the CPU: the script parses, and the bench writes its table."""

import json
import subprocess
import sys

from conftest import REPO


def test_the_gpu_check_script_parses():
    r = subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu_check.sh")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_throughput_bench_compares_layouts_and_precisions(tmp_path):
    out = tmp_path / "throughput.json"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_throughput.py"),
                        "--networks", "mobilenetv2_035", "--batch", "2", "--size", "32",
                        "--steps", "1", "--warmup", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(out.read_text())
    ours = [(row["precision"], row["layout"]) for row in summary["rows"]
            if row["impl"] == "nas"]
    assert ours == [("fp32", "nchw"), ("fp32", "channels_last"), ("bf16", "nchw"),
                    ("bf16", "channels_last")]
    assert all(row["images_per_s"] > 0 for row in summary["rows"])
    assert set(summary["faster_layout"]) == {"mobilenetv2_035/fp32", "mobilenetv2_035/bf16"}


def test_the_loader_bench_measures_the_imagenet_datamodule(tmp_path):
    """bench_loader.py at a tiny scale: JPEGs written in the ImageFolder layout, the
    per-image costs, the loader alone, nas.train end to end and the plain step."""
    out = tmp_path / "loader.json"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_loader.py"),
                        "--root", str(tmp_path / "jpegs"), "--images", "8", "--classes", "2",
                        "--width", "64", "--height", "48", "--size", "32", "--batch", "2",
                        "--batches", "2", "--warmup", "1", "--workers", "0", "--sample", "4",
                        "--repeats", "1", "--arch", "mobilenetv2_035",
                        "--normalize-on", "device", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    found = json.loads(out.read_text())
    assert found["uint8_batches"] is True and found["images"] == 8
    assert len(list((tmp_path / "jpegs" / "train").glob("c*/*.JPEG"))) == 8
    for key in ("decode_ms_per_image", "transform_ms_per_image", "loader_images_per_s",
                "end_to_end_images_per_s", "plain_step_images_per_s"):
        assert found[key] > 0, key
    ratio = found["end_to_end_images_per_s"] / found["plain_step_images_per_s"]
    assert abs(found["end_to_end_over_plain"] - ratio) < 0.005   # of the unrounded rates
