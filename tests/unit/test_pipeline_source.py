"""The pipelines of forwarders.ini as a source of the delivery service (pure)."""
from forwarders.pipeline.pipeline import Pipeline
from forwarders.pipeline.source import FixedPipelines, PipelineSource
from forwarders.subscriptions.source import SubscriptionPipelines
from searchlight_forward.model.documents import ADMIN, ROLES


def pipeline(name):
    return Pipeline(name, [], "sink", sink=None)


def test_each_pipeline_is_offered_once_with_every_group_that_reads_it():
    ops, audit = pipeline("ops"), pipeline("audit")
    source = FixedPipelines({"compute": [ops, audit], "network": [audit], "empty": []})
    offers = source.offers()
    assert sorted(offers) == ["audit", "ops"]
    assert offers["ops"].groups == ("compute",)
    assert offers["audit"].groups == ("compute", "network")
    assert offers["audit"].build() is audit and offers["ops"].revision == 0
    assert source.refresh_interval is None and source.roles == (ADMIN,)
    assert not source.tenants


def test_subscriptions_are_a_changing_source_of_tenants_pipelines_of_both_roles():
    assert issubclass(SubscriptionPipelines, PipelineSource)
    assert SubscriptionPipelines.tenants and SubscriptionPipelines.roles == ROLES
