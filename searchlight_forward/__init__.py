"""searchlight-forward: OpenStack notifications -> Elasticsearch -> forwarders."""
