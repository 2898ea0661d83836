"""The `local` backend: a folder for the bucket, a subprocess for the job, a loopback server."""
