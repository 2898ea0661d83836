"""Pure pipeline logic: no Prefect, no cloud SDKs, testable on its own."""
