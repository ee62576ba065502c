"""Lab helpers of the tests: real peers (sshd, snmpd, FRR, Redis, PostgreSQL, Redmine...) in netns or on loopback."""
