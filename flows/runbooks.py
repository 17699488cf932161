"""Every catalog runbook's flow as a module attribute, for `prefect.yaml` entrypoints
(`flows/runbooks.py:restore_tenant_data`) and `prefect.serve`.

Built when imported, from the catalog that `RUNBOOKS_CATALOG` names; a catalog with problems
refuses to import, naming them, rather than serve a partial set.
"""

from config import load_settings
from runbook_catalog import load_catalog

from .engine import build_flows, flow_attribute

FLOWS = build_flows(load_catalog(load_settings().catalog_dir, strict=True))
globals().update({flow_attribute(slug): built for slug, built in FLOWS.items()})
