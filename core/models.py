"""Every table of the service on one ``Base``: the migrations and the schema check read this module.
The models live by concept (``store``: tickets, people, calls; ``node_store``: the cluster's records;
``callback_list``: callers who gave up; ``incident_store``: outages and their callers;
``store_watch``: complaints and late arrivals; ``consent``: consent to a paid repair);
a module that adds tables is imported here, nowhere else."""

from core import callback_list, consent, incident_store, node_store, store, store_watch  # noqa: F401  (imported for their tables)
from core.db import Base

__all__ = ["Base"]
