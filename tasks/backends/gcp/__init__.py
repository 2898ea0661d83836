"""The `gcp` backend: GCS, Cloud Build, a Cloud Run GPU job and a Cloud Run GPU service.

Kept free of imports so `tasks.backends.gcp.config` (read by the settings) loads without
Google's client libraries; `backend.build_gcp_backend` pulls them in.
"""
