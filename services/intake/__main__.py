"""Start the intake: read settings and policy, build, run (`complaints run intake`)."""

from services.common.runtime import serve
from services.intake.app import build
from services.intake.settings import IntakeSettings

if __name__ == "__main__":
    serve(build, IntakeSettings)
