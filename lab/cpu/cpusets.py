"""CPU sets as Docker's cpuset and Linux write them: '0', '0-1', '0,2-3'. Written once, in server.cpusets
(the image's server stage, which pins every container with it, has server/ but not lab/)."""
from server.cpusets import format_cpuset, parse_cpuset, pinned, usable_cpus

__all__ = ["format_cpuset", "parse_cpuset", "pinned", "usable_cpus"]
