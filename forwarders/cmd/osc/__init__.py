"""The OpenStackClient plugin for this project's own API (``openstack subscription
...``): entry points ``openstack.cli.extension`` (plugin) and
``openstack.searchlight_forward.v1`` (v1) in setup.cfg. A composition root:
nothing in the project imports it."""
