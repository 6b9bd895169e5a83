"""etc/searchlight-forward.conf.sample is what oslo-config-generator makes today."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_sample_config_is_up_to_date(tmp_path):
    out = tmp_path / "sample.conf"
    subprocess.run(
        [sys.executable, "-m", "oslo_config.generator", "--config-file",
         str(ROOT / "etc/oslo-config-generator/searchlight-forward.conf"),
         "--output-file", str(out)], check=True, capture_output=True, timeout=120)
    committed = (ROOT / "etc/searchlight-forward.conf.sample").read_text()
    assert out.read_text() == committed, "run `make sample-config` and commit the result"


def test_sample_policy_is_up_to_date(tmp_path):
    out = tmp_path / "policy.yaml"
    subprocess.run(
        [sys.executable, "-c", "from oslo_policy.generator import generate_sample; "
         "generate_sample()", "--namespace", "searchlight-forward", "--output-file",
         str(out)], check=True, capture_output=True, timeout=120)
    committed = (ROOT / "etc/policy.yaml.sample").read_text()
    assert out.read_text() == committed, "run `make sample-config` and commit the result"
