"""The test suites' S3 server: the project's own local S3 helper (orchestration/local_s3.py), re-exported."""

from orchestration.local_s3 import HOST, PORT_FLAGS, REGION, SeaweedFS, SeaweedFSError, find_weed, pick_ports

__all__ = ["HOST", "PORT_FLAGS", "REGION", "SeaweedFS", "SeaweedFSError", "find_weed", "pick_ports"]
