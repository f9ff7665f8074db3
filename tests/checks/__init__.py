"""Tests of checks/: one file per check type, and the Nagios perfdata parser."""
