"""Monitoring: drift against frozen reference profiles, data quality, delayed-label
performance, operational metrics, alert rules and HTML reports (``ws.monitors``)."""
