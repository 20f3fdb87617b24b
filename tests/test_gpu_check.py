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
