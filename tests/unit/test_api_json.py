"""Searchlight's answers are encoded by orjson (forwarders/api/app.py ``_json_fast``):
the same JSON and headers as webob's ``json_body``, and webob's encoder for what
orjson will not take."""
import json

from forwarders.api.app import _json, _json_fast

ANSWER = {"took": 3, "timed_out": False,
          "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
          "hits": {"total": 2, "max_score": 1.5, "hits": [
              {"_id": "a", "_index": "i", "_type": "OS::Nova::Server", "_score": 1.5,
               "_source": {"name": "web-é", "flavor": {"vcpus": 2, "ram": 0.25},
                           "tags": ["x", None, True]}, "sort": [1767225600000]}]},
          "aggregations": {"status": {"buckets": [{"key": "ACTIVE", "doc_count": 7}]}}}


def test_the_same_answer_as_json_body():
    fast, slow = _json_fast(ANSWER), _json(ANSWER)
    assert json.loads(fast.body) == json.loads(slow.body) == ANSWER
    assert fast.headerlist[0] == slow.headerlist[0] == ("Content-Type",
                                                        "application/json")
    assert fast.status == slow.status and fast.charset == slow.charset


def test_what_orjson_refuses_goes_through_webob():
    for data in ({"big": 2 ** 70}, {1: "a non-string key"}):
        assert _json_fast(data, 201).body == _json(data, 201).body
        assert _json_fast(data, 201).status_int == 201
