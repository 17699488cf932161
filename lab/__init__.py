"""The lab: real services on loopback ports of this machine, for proving the catalog's runbooks
end to end (`runbooks lab up | down | status`). Everything lives in the lab directory
(`RUNBOOKS_LAB_DIR`, default `<data dir>/lab`); see docs/lab.md."""
