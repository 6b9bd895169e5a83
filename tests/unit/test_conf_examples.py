"""The commented [keystone_authtoken] example of etc/searchlight-forward.conf is what
scripts/demo.py writes for the API, and the shipped tenants pipeline holds, as the
Zaqar sink does by default and docs/zaqar.md says."""
import configparser
import importlib.util
import pathlib

from forwarders.delivery import worker
from forwarders.pipeline.pipeline import HOLD
from tests.unit.test_shipped_config import shipped_conf

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACCOUNTS = {"auth_url": "http://127.0.0.1:5000/v3", "users": {"service": {
    "name": "searchlight-forward", "password": "SERVICE_PASSWORD",
    "project_id": "SERVICE_PROJECT_ID", "domain_id": "default"}}}


def commented_example() -> configparser.ConfigParser:
    text = (ROOT / "etc" / "searchlight-forward.conf").read_text()
    block = text[text.index("# [subscriptions]"):]
    parser = configparser.ConfigParser()
    parser.read_string("\n".join(line[2:] if line.startswith("# ") else ""
                                 for line in block.splitlines()))
    return parser


def demo_api_conf(monkeypatch) -> configparser.ConfigParser:
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    monkeypatch.setattr(demo, "private_file", lambda name, text: text)
    parser = configparser.ConfigParser()
    parser.read_string(demo.api_setup(ACCOUNTS))
    return parser


def test_the_commented_keystone_authtoken_example_is_what_the_demo_writes(monkeypatch):
    example, demo = commented_example(), demo_api_conf(monkeypatch)
    assert dict(example["keystone_authtoken"]) == dict(demo["keystone_authtoken"])
    assert dict(example["subscriptions"]) == dict(demo["subscriptions"])
    assert dict(example["keystone_authtoken"]) == {
        "www_authenticate_uri": "http://127.0.0.1:5000/v3", "interface": "public",
        "auth_type": "password", "auth_url": "http://127.0.0.1:5000/v3",
        "username": "searchlight-forward", "password": "SERVICE_PASSWORD",
        "project_id": "SERVICE_PROJECT_ID", "user_domain_id": "default"}


def test_the_shipped_tenants_pipeline_holds_like_the_zaqar_sinks_default():
    service = worker.build(shipped_conf())
    policies = {name: pipeline.failure.on_failure for group in service.groups.values()
                for name, pipeline in group.pipelines.items()}
    assert policies["tenants"] == HOLD
    assert (ROOT / "docs" / "zaqar.md").read_text().count("The sink's failure policy "
                                                           "defaults to `hold`") == 1
