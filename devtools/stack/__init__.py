"""The embedded stack of `make demo` and the tests: SeaweedFS, an SMTP sink, Airflow standalone."""
