"""SNMP: BER and USM codecs, the client (v1/v2c/v3), device profiles and the poller."""
