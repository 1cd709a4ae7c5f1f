"""Start the router: read settings and policy, build, run (`complaints run router`)."""

from services.common.runtime import serve
from services.router.app import build
from services.router.settings import RouterSettings

if __name__ == "__main__":
    serve(build, RouterSettings)
