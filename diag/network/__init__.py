"""Watching network devices from outside: SNMP polling and the multi-target exporter (``/snmp``)."""
