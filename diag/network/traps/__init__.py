"""SNMP traps and informs: the receiver, its configuration, and trap -> finding events."""
