"""The search server: its options, the client every process uses, and a probe.

The indexer, the change-log readers, the WebSocket server, the delivery service's
stores and ``searchlight-forward-manage`` all get their client from ``client(conf)``,
so a cluster setting (hosts, timeouts, how fast a dead node is tried again, which
server it is) is set once.

Two servers are supported, each through its official client:

* ``elasticsearch`` (8.x): the client is elasticsearch-py 8 itself.
* ``opensearch`` (2.x): the client is opensearch-py wrapped in
  :class:`~searchlight_forward.search_opensearch.OpenSearchClient`, which takes
  the same keyword style as elasticsearch-py 8 (``query=``, ``document=``,
  ``operations=``, ``options(...)``), so every call site is written once.

Call sites import what differs between the two from here, never from
``elasticsearch`` or ``opensearchpy``: the exception classes (tuples of both
libraries' classes, fine for ``except`` and ``isinstance``), :func:`status` of an
error, and :data:`helpers` (``bulk``, ``streaming_bulk``, ``parallel_bulk``,
``scan``), which hands the call to the helper of the client's own library.
"""
from __future__ import annotations

import logging
import types
from typing import Any, Union

import elasticsearch
import opensearchpy
from elasticsearch import helpers as _es_helpers
from elasticsearch.serializer import OrjsonSerializer
from opensearchpy import helpers as _os_helpers
from oslo_config import cfg

from searchlight_forward.search_opensearch import OpenSearchClient

LOG = logging.getLogger(__name__)

GROUP = "elasticsearch"
BACKENDS = ("elasticsearch", "opensearch")

opts = [
    cfg.StrOpt("backend", default="elasticsearch", choices=BACKENDS,
               help="Which search server the hosts run: Elasticsearch 8 "
                    "(elasticsearch-py) or OpenSearch 2 (opensearch-py). Both hold "
                    "the same contracts; see docs/opensearch.md for what differs."),
    cfg.ListOpt("hosts", default=["http://127.0.0.1:9200"],
                help="Search server URLs."),
    cfg.FloatOpt("request_timeout", default=30.0, min=0.1,
                 help="Seconds before a search server request is abandoned."),
    cfg.FloatOpt("max_dead_node_backoff", default=2.0, min=0.1,
                 help="Longest time, in seconds, the client leaves a node it found "
                      "unreachable before trying it again. Short, so that processes "
                      "resume within seconds of a node's return."),
    cfg.FloatOpt("write_timeout", default=60.0, min=0.1,
                 help="Longest time, in seconds, a bulk write waits for an unavailable "
                      "shard before the server answers 503 for its documents (they "
                      "are retried; see [listener] max_item_attempts)."),
    cfg.IntOpt("number_of_shards", default=1, min=1,
               help="Primary shards of a new index. Every reader keeps a position "
                    "per shard, so any number works."),
    cfg.IntOpt("number_of_replicas", default=0, min=0,
               help="Replicas of a new index (0 on a single-node cluster)."),
    cfg.StrOpt("dead_letter_index", default="searchlight-forward-deadletter",
               help="Index holding what could never be processed or delivered, "
                    "with the reason. Read it with "
                    "`searchlight-forward-manage dead-letters list`."),
]

# What a call site may hold: elasticsearch-py 8's client, or the adapter that makes
# opensearch-py look like it.
Client = Union[elasticsearch.Elasticsearch, OpenSearchClient]

# Exceptions of either client. elasticsearch-py 8 calls a 400 BadRequestError and
# the base of answered errors ApiError; opensearch-py calls them RequestError and
# TransportError (whose ConnectionError subclass is not an answer: see status()).
NotFoundError = (elasticsearch.NotFoundError, opensearchpy.NotFoundError)
ConflictError = (elasticsearch.ConflictError, opensearchpy.ConflictError)
BadRequestError = (elasticsearch.BadRequestError, opensearchpy.RequestError)
ConnectionError = (elasticsearch.ConnectionError, opensearchpy.ConnectionError)  # noqa: A001
ConnectionTimeout = (elasticsearch.ConnectionTimeout, opensearchpy.ConnectionTimeout)
ApiError = (elasticsearch.ApiError, opensearchpy.TransportError)


def status(exc: BaseException) -> int | None:
    """The HTTP status of a server's answer, or None (no answer: connection
    trouble, or not a search error at all)."""
    if isinstance(exc, elasticsearch.ApiError):
        return exc.meta.status
    if isinstance(exc, opensearchpy.TransportError):
        code = exc.status_code
        return code if isinstance(code, int) else None
    return None


def error_type(exc: BaseException) -> str | None:
    """The server's error type (``resource_already_exists_exception``, ...)."""
    if isinstance(exc, elasticsearch.ApiError):
        return exc.error
    if isinstance(exc, opensearchpy.TransportError):
        return exc.error if isinstance(exc.error, str) else None
    return None


def ensure_index(es: Client, index: str, mappings: dict, settings: dict) -> None:
    """Create ``index`` unless it exists (another process may create it at the
    same time: that is success too)."""
    if es.indices.exists(index=index):
        return
    try:
        es.indices.create(index=index, mappings=mappings, settings=settings)
    except BadRequestError as exc:
        if error_type(exc) != "resource_already_exists_exception":
            raise


def _helper(name: str):
    es_fn, os_fn = getattr(_es_helpers, name), getattr(_os_helpers, name)

    def call(client: Client, *args: Any, **kwargs: Any):
        if isinstance(client, OpenSearchClient):
            # request_timeout keeps a bulk's timeout= the server's (see the adapter)
            kwargs.setdefault("request_timeout", client.request_timeout)
            return os_fn(client.raw, *args, **kwargs)
        return es_fn(client, *args, **kwargs)
    call.__name__ = name
    call.__doc__ = f"``helpers.{name}`` of the client's own library."
    return call


helpers = types.SimpleNamespace(**{n: _helper(n) for n in (
    "bulk", "streaming_bulk", "parallel_bulk", "scan")})


def list_opts():
    return [(GROUP, opts)]


def connect(hosts: list[str] | str, backend: str = "elasticsearch", *,
            request_timeout: float = 30.0, max_dead_node_backoff: float = 2.0,
            connections_per_node: int = 10) -> Client:
    """A client of ``backend`` for ``hosts`` (also used by tests and benches)."""
    if backend == "opensearch":
        return OpenSearchClient.connect(hosts, request_timeout=request_timeout,
                                        dead_timeout=max_dead_node_backoff,
                                        pool_maxsize=connections_per_node)
    if backend != "elasticsearch":
        raise ValueError(f"unknown search backend {backend!r}; one of {BACKENDS}")
    # orjson encodes bulk bodies several times faster than json (profiled: JSON
    # encoding was a fifth of the indexer's CPU).
    return elasticsearch.Elasticsearch(
        hosts, serializer=OrjsonSerializer(), request_timeout=request_timeout,
        max_dead_node_backoff=max_dead_node_backoff, connections_per_node=connections_per_node)


def client(conf: cfg.ConfigOpts) -> Client:
    section = conf[GROUP]
    return connect(section.hosts, section.backend, request_timeout=section.request_timeout,
                   max_dead_node_backoff=section.max_dead_node_backoff)


def reachable(es: Client) -> bool:
    """A cheap probe: does the cluster answer (any health colour)?"""
    es.options(request_timeout=2.0).cluster.health()
    return True


def describe(es: Client) -> str:
    """The server's product and versions, e.g. ``opensearch 2.19.6``, for the log.
    Never fails: an unreachable server is described as such. (``GET /`` is absent
    from Elasticsearch's integ-test build; node info is in both.)"""
    product = "opensearch" if isinstance(es, OpenSearchClient) else "elasticsearch"
    try:
        nodes = es.options(request_timeout=5.0).nodes.info(
            filter_path="nodes.*.version")["nodes"]
    except Exception as exc:  # noqa: BLE001 - a description, not a check
        return f"{product} (version unknown: {type(exc).__name__})"
    return f"{product} {', '.join(sorted({n['version'] for n in nodes.values()}))}"


def log_server(es: Client, what: str) -> None:
    """Log, once at start-up, which server and version ``what`` talks to."""
    LOG.info("%s: search server is %s", what, describe(es))
