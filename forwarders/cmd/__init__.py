"""Console scripts of the ways out (see setup.cfg): the composition roots that put
the core and the forwarders together. Nothing imports them."""
import searchlight_forward.commands  # noqa: F401 - its warning filters, for every script
