"""Start the desk: read settings and policy, build, run (`python -m services.desk`)."""

from services.common.runtime import serve
from services.desk.app import build
from services.desk.settings import DeskSettings

if __name__ == "__main__":
    serve(build, DeskSettings)
