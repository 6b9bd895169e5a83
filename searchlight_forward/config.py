"""oslo.config options. ``list_opts`` feeds oslo-config-generator (etc/*.conf.sample)."""
from __future__ import annotations

from oslo_config import cfg
from oslo_messaging import opts as messaging_opts

listener_opts = [
    cfg.StrOpt("notifications_pool", default="searchlight-forward",
               help="RabbitMQ queue (oslo.messaging pool) shared by every listener "
                    "process of this deployment. Processes in one pool split the "
                    "stream; a second deployment with another pool gets its own copy. "
                    "Never leave it empty: the default notifications.* queues are "
                    "consumed by other services (Ceilometer) too."),
    cfg.IntOpt("workers", default=1, min=1,
               help="Listener processes to run; they share the pool."),
    cfg.IntOpt("batch_size", default=200, min=1,
               help="Notifications handed to the indexer in one batch (one "
                    "Elasticsearch mget and one bulk request per batch)."),
    cfg.FloatOpt("batch_timeout", default=0.2, min=0.01,
                 help="Longest wait, in seconds, for a batch to fill when "
                      "notifications are scarce: the delay floor at low rates. A "
                      "shorter timeout means more, smaller batches (each one mget, "
                      "bulk, doorbell ring and index refresh): 0.05 lowers the delay "
                      "where the machine has CPU to spare, and raises it on a "
                      "saturated one (docs/benchmarks.md)."),
    cfg.IntOpt("executor_threads", default=4, min=1,
               help="Batches handled at once in one process."),
    cfg.IntOpt("prefetch", default=0, min=0,
               help="RabbitMQ prefetch per consumer. 0 means 2 x batch_size."),
    cfg.FloatOpt("retry_initial_backoff", default=0.5, min=0.01,
                 help="First wait, in seconds, before retrying a batch that "
                      "Elasticsearch refused (unreachable, 429 or 5xx)."),
    cfg.FloatOpt("retry_max_backoff", default=30.0, min=0.1,
                 help="Longest wait between retries of one batch; retries go on "
                      "until Elasticsearch accepts it, without acknowledging it."),
]

elasticsearch_opts = [
    cfg.ListOpt("hosts", default=["http://127.0.0.1:9200"],
                help="Elasticsearch URLs."),
    cfg.FloatOpt("request_timeout", default=30.0,
                 help="Seconds before an Elasticsearch request is abandoned."),
    cfg.IntOpt("number_of_shards", default=1, help="Shards of a new index."),
    cfg.IntOpt("number_of_replicas", default=0,
               help="Replicas of a new index (0 on a single-node cluster)."),
    cfg.StrOpt("dead_letter_index", default="searchlight-forward-deadletter",
               help="Index holding notifications that can never be processed, "
                    "with the reason. Read it with "
                    "`searchlight-forward-manage dead-letters list`."),
]

resource_plugin_opts = [
    cfg.ListOpt("enabled", default=[],
                help="Resource plugins to load (entry point names in "
                     "searchlight_forward.resource_plugins). Empty means all "
                     "installed plugins."),
    cfg.StrOpt("resource_group_name", default="searchlight",
               help="Default resource group: documents go to the index behind "
                    "the aliases <group>-listener (writes) and <group>-search (reads)."),
]

# Options every [resource_plugin:<name>] section may carry.
per_plugin_opts = [
    cfg.StrOpt("resource_group_name",
               help="Resource group for this plugin; defaults to "
                    "[resource_plugins] resource_group_name."),
    cfg.ListOpt("admin_only_fields", default=[],
                help="Extra fnmatch patterns of top-level fields only admins see, "
                     "added to the plugin's built-in ones."),
    cfg.ListOpt("unsearchable_fields", default=[],
                help="fnmatch patterns of top-level fields that are stored but not "
                     "searchable, and that the unsearchable_fields forwarding filter "
                     "removes from every forwarded document."),
]

forwarding_opts = [
    cfg.StrOpt("config_file", default="forwarders.ini",
               help="The pipelines file (paste-like ini). A relative path is "
                    "relative to the directory of the first --config-file."),
    cfg.StrOpt("zaqar_url", default="http://127.0.0.1:8888",
               help="Zaqar endpoint for zaqar sinks that do not name a url."),
]

status_opts = [
    cfg.HostAddressOpt("status_host", default="127.0.0.1",
                       help="Address of the listener's status endpoint (GET /status)."),
    cfg.PortOpt("status_port", default=8790,
                help="Port of the status endpoint; worker N of a multi-process "
                     "listener uses status_port + N. 0 turns it off."),
]

LISTENER = "listener"
FORWARDING = "forwarding"
ELASTICSEARCH = "elasticsearch"
RESOURCE_PLUGINS = "resource_plugins"


def plugin_group(name: str) -> str:
    return f"resource_plugin:{name}"


def register_messaging(conf: cfg.ConfigOpts) -> None:
    """oslo.messaging's options, registered up front so they can be overridden
    before the transport (and its driver) exists."""
    for group, opts in messaging_opts.list_opts():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)


def register(conf: cfg.ConfigOpts, plugin_names=()) -> None:
    register_messaging(conf)
    conf.register_opts(listener_opts + status_opts, LISTENER)
    conf.register_opts(forwarding_opts, FORWARDING)
    conf.register_opts(elasticsearch_opts, ELASTICSEARCH)
    conf.register_opts(resource_plugin_opts, RESOURCE_PLUGINS)
    for name in plugin_names:
        conf.register_opts(per_plugin_opts, plugin_group(name))


def list_opts():
    from searchlight_forward.plugins import available_plugin_names
    opts = [(LISTENER, listener_opts + status_opts), (FORWARDING, forwarding_opts),
            (ELASTICSEARCH, elasticsearch_opts),
            (RESOURCE_PLUGINS, resource_plugin_opts)]
    from searchlight_forward.commands.websocket import websocket_opts
    opts.append(("websocket", websocket_opts))
    from forwarders.websocket import keystone
    opts.append((keystone.GROUP, keystone.list_opts()))
    opts += [(plugin_group(n), per_plugin_opts) for n in available_plugin_names()]
    return opts
