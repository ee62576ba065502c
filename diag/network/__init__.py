"""Network monitoring from outside: SNMP polling, traps and reachability probes."""
