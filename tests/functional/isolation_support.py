"""What the isolation properties draw: resources of a few types in given projects,
with an admin-only field, a field a regex filter removes, updates and a delete."""
from __future__ import annotations

from hypothesis import strategies as st

TYPES = ["OS::Nova::Server", "OS::Neutron::Port", "OS::Cinder::Volume"]
ADMIN_FIELD = {"OS::Nova::Server": "OS-EXT-SRV-ATTR:host",
               "OS::Neutron::Port": "binding:host_id",
               "OS::Cinder::Volume": "os-vol-host-attr:host"}


def resources(projects, max_size: int = 10):
    return st.lists(st.fixed_dictionaries({
        "type": st.sampled_from(TYPES),
        "project": st.sampled_from(projects),
        "admin_field": st.booleans(),
        "secret": st.booleans(),
        "deleted": st.booleans(),
        "updates": st.integers(0, 2),
    }), min_size=1, max_size=max_size)
