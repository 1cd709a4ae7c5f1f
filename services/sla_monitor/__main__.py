"""Start the SLA monitor: read settings and policy, build, run (`complaints run sla-monitor`)."""

from services.common.runtime import serve
from services.sla_monitor.app import build
from services.sla_monitor.settings import SlaMonitorSettings

if __name__ == "__main__":
    serve(build, SlaMonitorSettings)
