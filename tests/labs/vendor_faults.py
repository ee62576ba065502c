"""Faults put into the recorded outputs of each vendor platform, and the finding each must make.

Each fault is a text change in one command's output, in that platform's own format (an interface whose line
protocol went down, a BGP peer in Active, the default route gone, the CPU at 97%, an error in the log...). The
unit tests apply them to the recorded outputs; tests/integration/test_vendor_devices.py puts them into the
emulated devices (tests/labs/fakenoslab.py) and runs the shipped playbooks through ``diag check``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    playbook: str
    command: str
    old: str
    new: str
    check: str
    subject: str = ""
    count: int = 1  # occurrences replaced (-1: all)


PLATFORMS = (
    "cisco_ios",
    "cisco_nxos",
    "cisco_xr",
    "juniper_junos",
    "arista_eos",
    "huawei_vrp",
    "mikrotik_routeros",
    "hp_comware",
    "eltex",
)

#: Interface speeds the inventory expects (``expected_speeds``), per platform.
EXPECTED_SPEEDS = {"juniper_junos": {"ge-0/0/1": 1000}}
#: The neighbour each platform's recorded CDP/LLDP table shows (what ``expected_neighbors`` names).
NEIGHBOR = {
    "cisco_ios": ("show cdp neighbors", "R1-PBX"),
    "cisco_nxos": ("show cdp neighbors", "my-dc1-mgt-sw1"),
    "cisco_xr": ("show lldp neighbors", "ASR-OCC-P1"),
    "juniper_junos": ("show lldp neighbors", "vmx2"),
    "arista_eos": ("show lldp neighbors", "localhost"),
    "huawei_vrp": ("display lldp neighbor", "ROUTER2"),
    "mikrotik_routeros": ("ip neighbor print terse without-paging", "core-1"),
    "hp_comware": ("display lldp neighbor-information list", "SWITCH01"),
    "eltex": ("show lldp neighbors", "core-1"),
}

#: Faults of one playbook are put into a device together, so two faults never touch one interface (a link that
#: is down shows no duplex).
FAULTS: dict[str, list[Fault]] = {
    "cisco_ios": [
        Fault("network-health", "show environment all", "1A  PWR-C1-715WAC       DCB2139G0AB  OK ",
              "1A  PWR-C1-715WAC       DCB2139G0AB  FAULTY ", "psu_failed", "1A"),
        Fault("network-health", "show environment all", "Switch 1: SYSTEM TEMPERATURE is OK",
              "Switch 1: SYSTEM TEMPERATURE is RED", "temperature_alarm", "SYSTEM"),
        Fault("network-interfaces", "show interfaces",
              "  Full-duplex, 10Gb/s, link type is auto, media type is QSFP-10G 1M",
              "  Half-duplex, 10Gb/s, link type is auto, media type is QSFP-10G 1M", "interface_duplex_mismatch",
              "TenGigabitEthernet1/1/1"),
        Fault("network-interfaces", "show interfaces", "TenGigabitEthernet1/1/2 is up, line protocol is up",
              "TenGigabitEthernet1/1/2 is up, line protocol is down", "interface_down", "TenGigabitEthernet1/1/2"),
        Fault("network-neighbors", "show ip bgp summary", "0    0 3w0d       558720", "0    0 3w0d       Active",
              "bgp_neighbor_down", "10.0.0.1"),
        Fault("network-neighbors", "show cdp neighbors", "R1-PBX", "R9-GONE", "neighbor_lost", "R1-PBX"),
        Fault("network-routes", "show ip route", "S*    0.0.0.0/0 [1/0] via 10.0.1.1\n", "", "default_route_missing",
              "0.0.0.0/0"),
        Fault("network-health", "show processes cpu", "five minutes: 5%", "five minutes: 97%", "cpu_high"),
        Fault("network-health", "show environment all", "Switch 1 FAN 2 is OK", "Switch 1 FAN 2 is FAULTY",
              "fan_failed", "FAN 2"),
        Fault("network-logs", "show logging", "*Sep 14 06:07:26.245: %LINEPROTO-5-UPDOWN:",
              "*Sep 14 06:07:26.245: %LINEPROTO-3-UPDOWN:", "log_errors"),
    ],
    "cisco_nxos": [
        Fault("network-interfaces", "show interface", "Vlan330 is up, line protocol is up",
              "Vlan330 is down (Link not connected), line protocol is down", "interface_down", "Vlan330"),
        Fault("network-neighbors", "show ip bgp summary", "0    0     3w1d 6", "0    0     3w1d Active",
              "bgp_neighbor_down", "10.0.2.1"),
        Fault("network-neighbors", "show cdp neighbors", "my-dc1-mgt-sw1(FOC213230KP)", "gone-sw9(FOC0)",
              "neighbor_lost", "my-dc1-mgt-sw1"),
        Fault("network-routes", "show ip route",
              "0.0.0.0/0, ubest/mbest: 1/0\n    *via 10.0.2.1, [1/0], 3w1d, static\n", "", "default_route_missing",
              "0.0.0.0/0"),
        Fault("network-health", "show system resources", "94.45% idle", "2.00% idle", "cpu_high"),
        Fault("network-logs", "show logging last 200", "%BGP-5-ADJCHANGE:  bgp- [4563] (default) neighbor 10.0.2.1 Up",
              "%BGP-3-ADJCHANGE:  bgp- [4563] (default) neighbor 10.0.2.1 Down", "log_errors"),
    ],
    "cisco_xr": [
        Fault("network-interfaces", "show interfaces", "Loopback5 is up, line protocol is up",
              "Loopback5 is down, line protocol is down", "interface_down", "Loopback5"),
        Fault("network-neighbors", "show ip bgp summary", "0    0     7w2d         82", "0    0     7w2d Active",
              "bgp_neighbor_down", "10.10.132.240"),
        Fault("network-neighbors", "show lldp neighbors", "ASR-OCC-P1", "ASR-GONE-P9", "neighbor_lost", "ASR-OCC-P1"),
        Fault("network-routes", "show ip route", "S*   0.0.0.0/0 [1/0] via 10.1.2.1, 5w0d\n", "",
              "default_route_missing", "0.0.0.0/0"),
        Fault("network-health", "show processes cpu", "CPU utilization for one minute: 5%;",
              "CPU utilization for one minute: 97%;", "cpu_high"),
        Fault("network-logs", "show logging last 200", "%ROUTING-BGP-5-ADJCHANGE : neighbor 10.1.2.1 Up",
              "%ROUTING-BGP-3-ADJCHANGE : neighbor 10.1.2.1 Down", "log_errors"),
    ],
    "juniper_junos": [
        Fault("network-interfaces", "show interfaces extensive", "Speed: 1000mbps", "Speed: 100mbps",
              "interface_speed_mismatch", "ge-0/0/1"),
        Fault("network-health", "show chassis environment", "      PEM 1                          OK\n",
              "      PEM 1                          Failed\n", "psu_failed", "PEM 1"),
        Fault("network-health", "show chassis environment", "FPC 0 Intake Temp Sensor       OK         28",
              "FPC 0 Intake Temp Sensor       Failed     88", "temperature_alarm", "FPC 0 Intake Temp Sensor"),
        Fault("network-interfaces", "show interfaces extensive", "Carrier transitions: 1, Errors: 0",
              "Carrier transitions: 9, Errors: 0", "interface_flapping", "ge-0/0/1"),
        Fault("network-interfaces", "show interfaces extensive", "Link-mode: Full-duplex", "Link-mode: Half-duplex",
              "interface_duplex_mismatch", "ge-0/0/1"),
        Fault("network-interfaces", "show interfaces extensive", "ge-0/0/2, Enabled, Physical link is Up",
              "ge-0/0/2, Enabled, Physical link is Down", "interface_down", "ge-0/0/2"),
        Fault("network-interfaces", "show interfaces extensive", "Errors: 0, Drops: 0, Framing",
              "Errors: {{rising}}, Drops: 0, Framing", "interface_errors_rising", "ge-0/0/1"),
        Fault("network-neighbors", "show bgp summary", "6:12 Establ\n  inet.0: 2/3/3/0", "6:12 Active",
              "bgp_neighbor_down", "10.1.3.1"),
        Fault("network-neighbors", "show lldp neighbors", "vmx2", "vmx9", "neighbor_lost", "vmx2"),
        Fault("network-routes", "show route terse", "* ? 0.0.0.0/0          S   5                       >10.1.2.1\n",
              "", "default_route_missing", "0.0.0.0/0"),
        Fault("network-health", "show chassis routing-engine", "Idle                      96 percent",
              "Idle                       2 percent", "cpu_high"),
        Fault("network-health", "show chassis environment", "Fan Tray 0 Fan 2               OK",
              "Fan Tray 0 Fan 2               Failed", "fan_failed", "Fan Tray 0 Fan 2"),
        Fault("network-logs", "show log messages", "sshd[9812]: Accepted password",
              "chassisd[9812]: CHASSISD_FRU_FAILURE: Fan Tray 0 Fan 2 failed; Accepted", "log_errors"),
    ],
    "arista_eos": [
        Fault("network-interfaces", "show interfaces", "  2 link status changes since last clear",
              "  12 link status changes since last clear", "interface_flapping", "Ethernet1"),
        Fault("network-interfaces", "show interfaces", "Ethernet1 is up, line protocol is up (connected)",
              "Ethernet1 is up, line protocol is down (notconnect)", "interface_down", "Ethernet1"),
        Fault("network-neighbors", "show ip bgp summary", "40d23h Estab  7      4", "40d23h Active",
              "bgp_neighbor_down", "192.168.1.2"),
        Fault("network-neighbors", "show lldp neighbors", "localhost", "otherhost", "neighbor_lost", "localhost", -1),
        Fault("network-routes", "show ip route", " S      0.0.0.0/0 [1/0] via 10.0.4.3, Ethernet1\n", "",
              "default_route_missing", "0.0.0.0/0"),
        Fault("network-health", "show processes top once", "95.2 id", " 2.0 id", "cpu_high"),
        Fault("network-logs", "show logging last 200", "%BGP-5-ADJCHANGE: peer 192.168.1.2",
              "%BGP-3-NOTIFICATION: peer 192.168.1.2", "log_errors"),
    ],
    "huawei_vrp": [
        Fault("network-health", "display memory-usage", "Memory Using Percentage Is: 43%",
              "Memory Using Percentage Is: 97%", "memory_high"),
        Fault("network-interfaces", "display interface",
              "GigabitEthernet0/0/2 current state : UP\nLine protocol current state : UP",
              "GigabitEthernet0/0/2 current state : UP\nLine protocol current state : DOWN", "interface_down",
              "GigabitEthernet0/0/2"),
        Fault("network-neighbors", "display bgp peer", "0021h10m Established        6", "0021h10m Active             0",
              "bgp_neighbor_down", "10.0.5.1"),
        Fault("network-neighbors", "display lldp neighbor", "System name         :ROUTER2",
              "System name         :ROUTER9", "neighbor_lost", "ROUTER2"),
        Fault("network-routes", "display ip routing-table",
              "        0.0.0.0/0   Static  60   0           RD  10.0.5.1        GigabitEthernet0/0/1\n", "",
              "default_route_missing", "0.0.0.0/0"),
        Fault("network-health", "display cpu-usage", "CPU Usage            : 12%", "CPU Usage            : 97%",
              "cpu_high"),
        Fault("network-logs", "display logbuffer", "%%01BGP/6/STATE_CHG_UPDOWN", "%%01BGP/3/STATE_CHG_UPDOWN",
              "log_errors"),
    ],
    "mikrotik_routeros": [
        Fault("network-health", "system resource print", "free-memory: 812.5MiB", "free-memory: 12.5MiB",
              "memory_high"),
        Fault("network-interfaces", "interface print terse without-paging", "13:23:11 link-downs=3",
              "13:23:11 link-downs=11", "interface_flapping", "ether2_UniFi2"),
        Fault("network-interfaces", "interface print terse without-paging", " 3  R  name=bridge-VLAN1",
              " 3     name=bridge-VLAN1", "interface_down", "bridge-VLAN1"),
        Fault("network-neighbors", "routing bgp peer print status without-paging", 'state=established',
              'state=active', "bgp_neighbor_down", "1.2.3.4"),
        Fault("network-neighbors", "ip neighbor print terse without-paging", "identity=core-1", "identity=core-9",
              "neighbor_lost", "core-1"),
        Fault("network-routes", "ip route print terse without-paging", " 0 ADS dst-address=0.0.0.0/0",
              " 0 XS dst-address=0.0.0.0/0", "default_route_missing", "0.0.0.0/0"),
        Fault("network-health", "system resource print", "cpu-load: 3%", "cpu-load: 97%", "cpu_high"),
        Fault("network-logs", "log print detail without-paging", "time=jul/19 16:27:01 topics=script,info",
              "time=jul/19 16:27:01 topics=system,error,critical", "log_errors"),
    ],
    "hp_comware": [
        Fault("network-health", "display memory", "312880       54.0%", "312880        2.0%", "memory_high"),
        Fault("network-interfaces", "display interface",
              "Vlan-interface2000\nCurrent state: UP\nLine protocol state: UP",
              "Vlan-interface2000\nCurrent state: UP\nLine protocol state: DOWN", "interface_down",
              "Vlan-interface2000"),
        Fault("network-neighbors", "display bgp peer ipv4", "0       6 21:10:02 Established",
              "0       0 21:10:02 Active", "bgp_neighbor_down", "10.0.7.1"),
        Fault("network-neighbors", "display lldp neighbor-information list", "SWITCH01", "SWITCH09", "neighbor_lost",
              "SWITCH01", -1),
        Fault("network-routes", "display ip routing-table",
              "0.0.0.0/0          Static  60  0           192.168.56.1      GE0/1\n", "", "default_route_missing",
              "0.0.0.0/0"),
        Fault("network-health", "display cpu-usage", "4% in last 5 minutes", "97% in last 5 minutes", "cpu_high"),
        Fault("network-logs", "display logbuffer", "BGP/5/BGP_STATE_CHANGED", "BGP/3/BGP_STATE_CHANGED",
              "log_errors"),
    ],
    "eltex": [
        Fault("network-interfaces", "show interface",
              "  Full-duplex, 1000Mbps, link type is auto, media type is 1G-Fiber",
              "  Half-duplex, 1000Mbps, link type is auto, media type is 1G-Fiber", "interface_duplex_mismatch",
              "gigabitethernet1/0/1"),
        Fault("network-interfaces", "show interface", "gigabitethernet1/0/2 is up (connected)",
              "gigabitethernet1/0/2 is down (not connected)", "interface_down", "gigabitethernet1/0/2"),
        Fault("network-neighbors", "show ip bgp summary", "3w1d            6", "3w1d       Active",
              "bgp_neighbor_down", "10.0.11.1"),
        Fault("network-neighbors", "show lldp neighbors", "core-1", "core-9", "neighbor_lost", "core-1"),
        Fault("network-routes", "show ip route", "S*    0.0.0.0/0 [1/0] via 10.0.1.1\n", "", "default_route_missing",
              "0.0.0.0/0"),
        Fault("network-health", "show cpu utilization", "five minutes: 4%", "five minutes: 97%", "cpu_high"),
        Fault("network-health", "show system", "Fan 2 Status:                             OK",
              "Fan 2 Status:                             Failure", "fan_failed", "2"),
        Fault("network-logs", "show logging", ":%LINK-I-Up:  gi1/0/1", ":%LINK-E-Down:  gi1/0/1", "log_errors"),
    ],
}  # fmt: skip

#: A change made on the device, as its running configuration shows it afterwards: (old line, new line).
CONFIG_CHANGE = {
    "cisco_ios": ("show running-config", " description server-a", " description server-b"),
    "cisco_nxos": ("show running-config", "  description uplink to spine-1", "  description uplink to spine-2"),
    "cisco_xr": ("show running-config", " description core-1", " description core-7"),
    "juniper_junos": ("show configuration", "        description core-2;", "        description core-7;"),
    "arista_eos": ("show running-config", "   description spine-1 Ethernet1", "   description spine-2 Ethernet1"),
    "huawei_vrp": ("display current-configuration", " description uplink core-1", " description uplink core-7"),
    "mikrotik_routeros": (
        "export",
        'set [ find default-name=ether1 ] comment="uplink core-1"',
        'set [ find default-name=ether1 ] comment="uplink core-7"',
    ),
    "hp_comware": ("display current-configuration", " description uplink core-1", " description uplink core-7"),
    "eltex": ("show running-config", " description uplink_core-1", " description uplink_core-7"),
}
#: Secrets written in each platform's recorded configuration; none may reach the archive.
SECRETS = (
    "n0cR3ad", "n0cWr1te", "trapC0mm", "S3cretPSK", "Vpn-S3cret", "W1f1-Pr3shared", "Bgp-Md5-K3y", "B4ckup-pw",
    "$9$", "$6$", "$5$", "$1c$", "%^%#", "$c$3$", "$h$6$", "0822455D0A16", "fewhg123", "asdfjkl",
)  # fmt: skip
